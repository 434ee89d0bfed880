-- metaflows/resume: reconnect the two legs (Kazoo's konami_resume): takes
-- the held leg off hold. Data: none. Exit: continue to "_".
return {
	description = "Take the held leg off hold.",
	schema = { type = "object", properties = {} },
	handle = function(call, _data)
		if not call:unhold() then
			call:log("info", "resume: nothing on hold")
		end
		return nil
	end,
}
