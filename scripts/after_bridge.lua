-- after_bridge: say what happens to the caller when a later bridge ends
-- (Kazoo's cf_after_bridge sets the Park-/Hangup-/Transfer-After-Pickup
-- channel variables).
--
-- Data (CODE defaults, none):
-- * `action`: "park" | "hangup" | "transfer".
-- * `data`: for park and hangup, whether to do it (true / "true"; anything
--   else counts as false); for transfer, the extension to transfer to (a
--   string; any other value sets nothing).
--
-- Sets the call variable "Park-After-Pickup" (boolean),
-- "Hangup-After-Pickup" (boolean) or "Transfer-After-Pickup" (string). An
-- unknown action sets nothing (Kazoo logs "unknown command").
--
-- Exit: continues to "_".
--
-- Deviation: the simulator's bridge does not act on these variables when it
-- ends (no park, hang-up or transfer after it); they are only recorded.
local kazoo = require("kazoo")

return {
	description = "Set what happens after a bridge: park, hang up or transfer.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "park", "transfer", "hangup" } },
			data = { oneOf = { { type = "boolean" }, { type = "string" } } },
		},
	},
	handle = function(call, data)
		local action = data.action
		if action == "park" then
			call:set("Park-After-Pickup", kazoo.boolean(data.data, false) == true)
		elseif action == "hangup" then
			call:set("Hangup-After-Pickup", kazoo.boolean(data.data, false) == true)
		elseif action == "transfer" and type(data.data) == "string" then
			call:set("Transfer-After-Pickup", data.data)
		else
			call:log("info", "after_bridge: unknown command " .. tostring(action) .. "(" .. tostring(data.data) .. ")")
		end
	end,
}
