-- hangup: hang up now (Kazoo's cf_hangup: a queued hangup, then a hard stop;
-- children are never used).
return {
	description = "Hang up the call.",
	schema = { type = "object", properties = {} },
	handle = function(call, data)
		call:hangup()
	end,
}
