-- user: ring every device of a user (Kazoo's cf_user, kazoo-callflows.md
-- §3.1).
--
-- Data (CODE defaults):
-- * `id`: the user; their devices are those whose owner_id is the user (or
--   whose hotdesk users include them), in id order.
-- * `timeout` (20): seconds the whole bridge rings; also each device's own
--   ring time when > 0.
-- * `strategy` ("simultaneous") | "single": all at once, or one after another.
-- * `delay` (0): seconds before each device starts ringing.
-- * `can_call_self` (false): without it, neither the calling device nor
--   another device of the caller's own user is rung.
-- * `can_text_self`, `suppress_clid`, `static_invite`, `custom_sip_headers`,
--   `fail_on_single_reject`: accepted, no effect in this simulator.
-- Devices that are disabled, missing or on do-not-disturb are skipped; a
-- device forwarding its calls (call_forward) also rings the forward number
-- (endpoints.lua). With the call variable "auto_answer" set (intercom) the
-- devices answer by themselves.
--
-- Exits: no device to ring -> "_"; answered -> the call ends there (stop:
-- back to the flow that branched here, if any); a failed bridge (busy, no
-- answer, rejected, unregistered) -> the child named by the cause
-- ("USER_BUSY", "NO_ANSWER", ...), else by the SIP code ("sip:486"), else
-- "_" (Kazoo's bridge-failure rule). The caller hanging up ends the call.
local kazoo = require("kazoo")
local endpoints = require("endpoints")

return {
	description = "Ring all devices of a user.",
	schema = {
		type = "object",
		properties = {
			id = { type = "string" },
			timeout = { type = "integer", default = 20 },
			strategy = { type = "string", enum = { "simultaneous", "single" }, default = "simultaneous" },
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
		local user_id = kazoo.string(data.id)
		local list = {}
		if user_id then
			local props = { delay = data.delay, timeout = data.timeout, can_call_self = data.can_call_self, source = "user" }
			for _, device_id in endpoints.owned_devices(call, user_id) do
				endpoints.add(call, list, device_id, props, "user: not ringing ")
			end
		end
		if #list == 0 then
			call:log("info", "user " .. tostring(user_id) .. " has no endpoints; continuing")
			return nil
		end
		local outcome = endpoints.bridge(call, list, {
			timeout_s = endpoints.timeout(data.timeout, 20),
			strategy = kazoo.string(data.strategy, "simultaneous"),
		})
		return endpoints.finish(call, outcome)
	end,
}
