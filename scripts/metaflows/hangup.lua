-- metaflows/hangup: hang up the leg that pressed the code (Kazoo's
-- konami_hangup). The caller's leg: the call ends. The callee's leg: it
-- hangs up, which (as any callee hang-up) ends the caller's leg too.
-- Data: none. Exit: continue to "_" (the call is gone: nothing runs).
local metaflows = require("metaflows")

return {
	description = "Hang up the leg that pressed the code.",
	schema = { type = "object", properties = {} },
	handle = function(call, data)
		if metaflows.pressed(call, data) == "a" then
			call:hangup()
		else
			call:hangup_peer()
		end
		return nil
	end,
}
