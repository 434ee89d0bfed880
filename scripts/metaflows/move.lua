-- metaflows/move: move your side of a call to another of your phones
-- (Kazoo's konami_move): rings the other devices of the owner of the phone
-- that pressed the code (or of `owner_id`); the first to answer takes that
-- side over, and the conversation goes on with it.
--
-- Data: `owner_id` (the pressing device's owner); `auto_answer`,
-- `dial_strategy`, `can_call_self`, `device_id` are accepted, not applied
-- (the devices ring at once, each as its scenario says). Needs a bridge. The callee moving: the caller now talks to the new
-- device (its hang-up ends the call). The caller moving: the caller's side
-- is on the new device; the simulated call goes on.
-- No owner, no other device, no answer: nothing changes. Exit: stop.
local kazoo = require("kazoo")
local endpoints = require("endpoints")
local metaflows = require("metaflows")

return {
	description = "Move your side of the call to another of your phones.",
	schema = {
		type = "object",
		properties = {
			auto_answer = { type = "boolean", default = false },
			can_call_self = { type = "boolean" },
			dial_strategy = { type = "string" },
			device_id = { type = "string" },
			owner_id = { type = "string" },
		},
	},
	handle = function(call, data)
		local pressed = metaflows.pressed(call, data)
		if call:peer() == nil then
			call:log("info", "move: no bridge, nothing to move")
			return call:stop()
		end
		local device = metaflows.device_of(call, pressed)
		local owner = kazoo.string(data.owner_id)
		if not owner and device then
			local doc = call:doc("devices", device)
			owner = doc and endpoints.device_owners(doc)[1]
		end
		if not owner then
			call:log("info", "move: the phone has no owner")
			return call:stop()
		end
		local list = {}
		for _, id in endpoints.owned_devices(call, owner) do
			if id ~= device then
				table.insert(list, id)
			end
		end
		if #list == 0 then
			call:log("info", "move: the owner has no other phone")
			return call:stop()
		end
		call:attended_transfer(owner, list, {
			transferor = pressed,
			complete_on_answer = true,
			timeout_s = 20,
		})
		return call:stop()
	end,
}
