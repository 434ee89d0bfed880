-- move: move the caller's owner's other call to this phone (Kazoo's
-- cf_move: dial it from another of your phones to pick up the call you are
-- on).
--
-- Data: none.
--
-- Kazoo finds the call's owner (the calling device's `owner_id`), asks the
-- switch for the live channels of every device that owner has, leaves this
-- call out, and:
-- * no owner: plays "cf-move-no_owner";
-- * no other channel: plays "cf-move-no_channel";
-- * more than one: plays "cf-move-too_many_channels";
-- * exactly one: picks up that channel's other leg (this phone takes the
--   call over).
-- Exit: stops in every case (children are never used).
--
-- Deviation: the simulator runs one call at a time, so no other channel of
-- the owner is ever up: the module emits `move.query` (owner_id and the
-- owner's device ids, what Kazoo asks the switch about) and then plays
-- "cf-move-no_channel". Moving a call would need an API listing the
-- account's live channels (e.g. `call:channels({owner_id = ...})`) and a
-- pickup verb (`call:pickup(call_id)`).
local kazoo = require("kazoo")

local function owner_of(call)
	local device = call.calling_device
	if not device then
		return nil
	end
	local doc = call:doc("devices", device)
	return doc and kazoo.string(doc.owner_id) or nil
end

return {
	description = "Move the owner's other call to this phone.",
	schema = { type = "object", properties = {} },
	handle = function(call, _data)
		local owner = owner_of(call)
		if owner == nil then
			call:log("warning", "move: call has no owner_id")
			call:play("cf-move-no_owner")
			return call:stop()
		end
		local devices = {}
		for _, device in call:docs("devices") do
			if device.owner_id == owner then
				table.insert(devices, device.id)
			end
		end
		call:emit({ event = "move.query", owner_id = owner, devices = devices })
		-- The simulator has no other live channel: nothing to move.
		call:log("warning", "move: cannot move call, no channel up")
		call:play("cf-move-no_channel")
		return call:stop()
	end,
}
