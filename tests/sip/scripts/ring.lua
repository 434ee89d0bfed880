-- ring: send ringing (180) to the caller and continue to "_" (no Kazoo
-- module does only this; the SIP tests use it to hold a call unanswered
-- while the caller cancels).
return {
	description = "Send ringing (180), then continue.",
	schema = { type = "object", properties = {} },
	handle = function(call, _data)
		call:ring()
		return nil
	end,
}
