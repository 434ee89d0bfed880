-- intercom: call an extension whose phones answer by themselves (Kazoo's
-- cf_intercom, kazoo-callflows.md §3.1). Used from a feature code such as
-- "^\*0([0-9]+)$".
--
-- Data:
-- * `barge_calls` (false): whether a busy phone is interrupted; kept in the
--   call variable "auto_answer_suppress_notify" (= not barge_calls, Kazoo's
--   Auto-Answer-Suppress-Notify), not modelled further.
--
-- The capture group, normalized (call:normalize), is looked up as a callflow
-- (call:lookup). When one matches that is not the no_match callflow, the
-- call variable "auto_answer" is set to true and the call branches to that
-- callflow (by id: the capture group stays the intercom's, as in Kazoo).
-- The bridging modules (user, device, ring_group, group, route_to_cid) then
-- ring with auto-answer (call:bridge's page = true). Like Kazoo's channel
-- variable, "auto_answer" stays set for the rest of the call.
--
-- Exits: no capture group -> plays "fault-can_not_be_completed_as_dialed"
-- (Kazoo's cf_exe:stop_bad_destination) and stops; no callflow, or only
-- no_match -> "_"; found -> branch (this node's "_" is where the call
-- returns).
--
-- Deviation: Kazoo normalizes with the system's E.164 converters only;
-- call:normalize also applies the account's dial plan.
local kazoo = require("kazoo")

return {
	description = "Call an extension with auto-answer.",
	schema = {
		type = "object",
		properties = {
			barge_calls = { type = "boolean" },
		},
	},
	handle = function(call, data)
		local captured = kazoo.string(call.capture_group)
		if not captured then
			call:play("fault-can_not_be_completed_as_dialed")
			return call:stop()
		end
		local number = call:normalize(captured)
		local route, reason = call:lookup(number)
		if not route then
			call:log("info", "intercom: " .. tostring(reason) .. "; continuing")
			return nil
		end
		if route.no_match then
			call:log("info", "intercom: " .. number .. " only matches no_match; continuing")
			return nil
		end
		call:set("auto_answer_suppress_notify", not kazoo.boolean(data.barge_calls, false))
		call:set("auto_answer", true)
		local directive, err = call:branch(route.callflow_id)
		if not directive then
			call:log("warning", "intercom: " .. tostring(err))
			return nil
		end
		return directive
	end,
}
