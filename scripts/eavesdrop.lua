-- eavesdrop: listen to a call of a device or user (Kazoo's cf_eavesdrop,
-- kazoo-callflows.md §3.1).
--
-- Data:
-- * `device_id`: a call of that device, else `user_id`: a call of any of
--   the user's devices (a call ringing it, answered by it, or made from
--   it). Kazoo reads no `group_id` here.
-- * `approved_device_id` / `approved_user_id` / `approved_group_id`: the
--   first given decides who may listen (the calling device is that device,
--   or one of that user's or group's). One is required: without any, nobody
--   may (Kazoo's check_value_of_fields with a false default).
--
-- Not allowed: answers, plays "eavesdrop-no_channels", stops. No devices:
-- "pickup-no_users"; no call of them: "pickup-no_channels". Else it
-- answers and listens to the first such call (call:eavesdrop) until that
-- call ends or the eavesdropper hangs up; the eavesdropper's digits switch
-- the mode as FreeSWITCH's eavesdrop with DTMF does (1 whisper to the
-- target's caller, 2 to its peer, 3 three-way, 0 listen), each an
-- `eavesdrop_mode` event.
--
-- Calls are seen through call:channels(): the other calls of a multi-call
-- scenario. Exits: stop, always.
local endpoints = require("endpoints")

return {
	description = "Listen to a call of a device or user.",
	schema = {
		type = "object",
		properties = endpoints.pickup_properties(),
	},
	handle = function(call, data)
		if not endpoints.approved(call, data, false) then
			call:answer()
			call:play("eavesdrop-no_channels")
			return call:stop()
		end
		local devices = endpoints.device_or_user_devices(call, data)
		if #devices == 0 then
			call:answer()
			call:play("pickup-no_users")
			return call:stop()
		end
		local calls = endpoints.calls_of_devices(call, devices)
		if #calls == 0 then
			call:answer()
			call:play("pickup-no_channels")
			return call:stop()
		end
		call:answer()
		call:eavesdrop(calls[1].call_id)
		return call:stop()
	end,
}
