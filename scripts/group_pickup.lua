-- group_pickup: answer a call that is ringing another phone (Kazoo's
-- cf_group_pickup, kazoo-callflows.md §3.1).
--
-- Data (the most specific target wins):
-- * `device_id`: a call ringing that device;
-- * `user_id`: a call ringing any device of that user;
-- * `group_id`: a call ringing any device of the group (groups/<id>: its
--   "device" members and the devices of its other members, sorted).
-- * `approved_device_id` / `approved_user_id` / `approved_group_id` (the
--   first given counts): only that device, a device of that user, or a
--   device of that group may pick up; otherwise it answers and says "you
--   have no permission to intercept this call" (Kazoo's text, spelled out
--   by `say`).
--
-- It emits a `pickup` event with the devices it would look at, answers,
-- and plays "system_media/pickup-no_users" when there are none, else
-- "system_media/pickup-no_channels": no call is ringing them.
--
-- API gap: the call API cannot see or join other calls (Kazoo asks
-- ecallmgr for the devices' channels and sends call_pickup), so there is
-- never a ringing call to pick up; a successful pickup (connected until a
-- side hangs up) cannot be simulated.
--
-- Exits: stop, always. Without any of device_id, user_id and group_id
-- Kazoo's module crashes: an error is raised and the call continues "_".
local endpoints = require("endpoints")

return {
	description = "Pick up a call ringing a device, user or group.",
	schema = {
		type = "object",
		properties = endpoints.pickup_properties(),
	},
	handle = function(call, data)
		return endpoints.pickup(call, data)
	end,
}
