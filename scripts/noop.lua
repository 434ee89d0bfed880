-- noop: do nothing and continue to "_" (Kazoo's cf_noop).
return {
	description = "Do nothing; continue to the default child.",
	schema = { type = "object", properties = {} },
	handle = function(call, data)
		return nil
	end,
}
