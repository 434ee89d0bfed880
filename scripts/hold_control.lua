-- hold_control: put the call on hold, take it off hold, or toggle (Kazoo has
-- no callflow module for this: only the metaflow schema
-- `metaflows.hold_control`, whose data this module takes).
--
-- Data (CODE defaults):
-- * `action` ("toggle"): "hold", "unhold" or "toggle".
--
-- The hold state is the call variable "on_hold" (shared with the `hold`
-- module): "hold" sets it true, "unhold" false, "toggle" flips it (unset
-- counts as false). A `hold_control` event records the action and the new
-- state (`held`). An unknown action changes nothing.
--
-- Exit: continues to "_".
--
-- Deviation: holding is meant for the other leg of a bridged call (it hears
-- music on hold); the simulator's call has no other leg, so only the state
-- changes and is recorded.
local kazoo = require("kazoo")

return {
	description = "Hold, unhold or toggle the hold state of the call.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "hold", "unhold", "toggle" }, default = "toggle" },
		},
	},
	handle = function(call, data)
		local action = kazoo.string(data.action, "toggle")
		local held
		if action == "hold" then
			held = true
		elseif action == "unhold" then
			held = false
		elseif action == "toggle" then
			held = not (call:get("on_hold") == true)
		else
			call:log("warning", "hold_control: unknown action " .. action)
			return nil
		end
		call:emit({ event = "hold_control", action = action, held = held })
		call:set("on_hold", held)
	end,
}
