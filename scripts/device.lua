-- device: ring one device (Kazoo's cf_device, kazoo-callflows.md §3.1).
--
-- Data (CODE defaults):
-- * `id`: the device (devices/<id>).
-- * `timeout` (20): seconds the bridge rings, and the device's own ring time.
--   The schema's default 0 (written by Crossbar) counts as 20 here; what
--   FreeSWITCH does with Kazoo's 0 is unverified.
-- * `dial_strategy` ("simultaneous") | "single": how the device's endpoints
--   (the device and its call-forward number) ring.
-- * `delay` (0): seconds before it starts ringing.
-- * `can_call_self` (false): without it, calling your own device (or a
--   device of your own user) does not ring.
-- * `can_text_self`, `suppress_clid`, `static_invite`, `custom_sip_headers`,
--   `fail_on_single_reject`: accepted, no effect in this simulator.
-- A device forwarding its calls (call_forward) also rings the forward number
-- (endpoints.lua). With the call variable "auto_answer" set (intercom) the
-- device answers by itself.
--
-- Exits: no id, a missing, disabled or do-not-disturb device, or the
-- caller's own device -> "_"; answered -> the call ends there (stop); a
-- failed bridge -> the child named by the cause ("USER_BUSY"), else by the
-- SIP code ("sip:486"), else "_".
local kazoo = require("kazoo")
local endpoints = require("endpoints")

return {
	description = "Ring a device.",
	schema = {
		type = "object",
		properties = {
			id = { type = "string" },
			timeout = { type = "integer", default = 0 },
			dial_strategy = { type = "string", enum = { "simultaneous", "single" }, default = "simultaneous" },
			delay = { type = "integer", default = 0 },
			can_call_self = { type = "boolean" },
			can_text_self = { type = "boolean" },
			suppress_clid = { type = "boolean" },
			static_invite = { type = "string" },
			custom_sip_headers = { type = "object" },
			fail_on_single_reject = { type = "boolean" },
		},
	},
	handle = function(call, data)
		local device_id = kazoo.string(data.id)
		local list, reason = endpoints.build(call, device_id, {
			delay = data.delay,
			timeout = data.timeout,
			can_call_self = data.can_call_self,
			source = "device",
		})
		if not list then
			call:log("info", "device: cannot ring " .. tostring(device_id) .. ": " .. reason .. "; continuing")
			return nil
		end
		local outcome = endpoints.bridge(call, list, {
			timeout_s = endpoints.timeout(data.timeout, 20),
			strategy = kazoo.string(data.dial_strategy, "simultaneous"),
		})
		return endpoints.finish(call, outcome)
	end,
}
