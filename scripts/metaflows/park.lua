-- metaflows/park: park the other leg in a parking slot (Kazoo has no
-- konami module for this; the SmartPBX way is a blind transfer to *3).
--
-- Data: `slot` (default: the first of `captures`, else the park module's
-- choice: the first free slot after 100).
-- * The callee pressed (or no bridge is up): the caller's leg is parked:
--   the flow running is replaced by the `park` callflow module with
--   `action: "direct_park"` (it saves the slot, holds the caller, and rings
--   the parker back as that module does).
-- * The caller pressed during a bridge: the peer is sent to the slot (a
--   blind transfer to "park:<slot>") and leaves the simulation; the caller's
--   flow goes on after its bridge.
-- Exit: stop.
local kazoo = require("kazoo")
local metaflows = require("metaflows")

return {
	description = "Park the other leg in a parking slot.",
	schema = {
		type = "object",
		properties = {
			slot = { type = "string" },
		},
	},
	handle = function(call, data)
		local slot = metaflows.capture(data, kazoo.string(data.slot))
		if call:peer() and metaflows.pressed(call, data) == "a" then
			call:transfer_peer("park:" .. (slot or "next"))
			return call:stop()
		end
		local park_data = { action = "direct_park" }
		if slot then
			park_data.slot = slot
		end
		local directive, err = call:replace_flow({ module = "park", data = park_data })
		if not directive then
			call:log("warning", "park: " .. tostring(err))
			return call:stop()
		end
		return directive
	end,
}
