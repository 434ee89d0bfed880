-- intercept: take over a call of a device, user or group, whether it still
-- rings or is already answered (Kazoo's cf_intercept, kazoo-callflows.md
-- §3.1).
--
-- Data (the most specific target wins), as group_pickup:
-- * `device_id`: a call ringing, or answered by, that device;
-- * `user_id`: any device of that user;
-- * `group_id`: any device of the group (groups/<id>: its "device" members
--   and the devices of its other members, sorted).
-- * `approved_device_id` / `approved_user_id` / `approved_group_id` (the
--   first given counts): only that device, a device of that user, or a
--   device of that group may intercept; otherwise it answers and says "you
--   have no permission to intercept this call" (Kazoo's text).
--
-- It emits an `intercept_search` event with the devices it looks at and
-- how many calls it found, answers, and:
-- * no devices: plays "system_media/pickup-no_users";
-- * no call rings or talks to them: plays "system_media/pickup-no_channels";
-- * else joins the first such call (call:pickup with intercept, Kazoo's
--   call_pickup with Unbridged-Only and Unanswered-Only false): a ringing
--   call is answered by this one; an answered call's callee is hung up and
--   this call takes its place (an `intercepted` event in that call's
--   trace). The two talk until one hangs up.
--
-- Calls are seen through call:channels(): the other calls of a multi-call
-- scenario (a one-call scenario never has a call to intercept).
--
-- Exits: stop, always. Without any of device_id, user_id and group_id an
-- error is raised and the call continues "_".
local endpoints = require("endpoints")

return {
	description = "Intercept a call ringing, or answered by, a device, user or group.",
	schema = {
		type = "object",
		properties = endpoints.pickup_properties(),
	},
	handle = function(call, data)
		return endpoints.pickup(call, data, { intercept = true })
	end,
}
