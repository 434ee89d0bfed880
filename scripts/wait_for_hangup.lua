-- wait_for_hangup: wait until the call ends (Kazoo's cf_wait_for_hangup).
-- Does not answer.
--
-- Data: none.
--
-- Exit: stops once the caller hangs up (children are never used).
return {
	description = "Wait until the caller hangs up.",
	schema = { type = "object", properties = {} },
	handle = function(call, _data)
		call:wait_for_hangup()
		return call:stop()
	end,
}
