-- metaflows/break: stop what plays to the leg that pressed the code
-- (Kazoo's konami_break: FreeSWITCH's break on that channel).
--
-- The caller's leg: the media the metaflow interrupted (a play, tts, say,
-- a collection's prompt, a sleep) stops now; the verb returns as completed
-- (a collection goes on waiting for digits). Nothing plays to the callee's
-- leg in a simulation, so a callee's break does nothing.
-- Data: none. Exit: continue to "_".
local metaflows = require("metaflows")

return {
	description = "Stop the media playing to the leg that pressed the code.",
	schema = { type = "object", properties = {} },
	handle = function(call, data)
		if metaflows.pressed(call, data) == "a" then
			call:break_media()
		end
		return nil
	end,
}
