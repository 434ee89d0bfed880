-- world_probe: reach another call of the server with one verb, for the
-- world tests of real calls (tests/it/sip/world.rs). The built-in modules
-- reach calls the same way after their own checks (approvals, slots,
-- queues); this one goes straight to the verb.
--
-- Data:
-- * `verb`: `eavesdrop` or `intercept` (the first call in `state`),
--   `wait` (at `place`, 30 s at most) or `wake` (the calls at `place`).
-- * `state`: what the target is doing (`answered`, ...).
-- * `place`: where `wait` and `wake` meet.
-- * `stay`: after the verb, wait for the caller to hang up (else the call
--   ends at once).
--
-- The outcome goes to the log (`world_probe <verb>: <outcome>`); exits:
-- none (the call ends after the verb).
local function target(call, state)
	for _, channel in call:channels() do
		if channel.state == state then
			return channel.call_id
		end
	end
	return "none"
end

return {
	description = "Reach another call with one verb (world tests).",
	schema = {
		type = "object",
		properties = {
			verb = { type = "string", enum = { "eavesdrop", "intercept", "wait", "wake" } },
			state = { type = "string" },
			place = { type = "string" },
			stay = { type = "boolean" },
		},
		required = { "verb" },
	},
	handle = function(call, data)
		call:answer()
		local outcome
		if data.verb == "eavesdrop" then
			outcome = call:eavesdrop(target(call, data.state)).reason
		elseif data.verb == "intercept" then
			outcome = call:pickup(target(call, data.state), { intercept = true }).status
		elseif data.verb == "wait" then
			outcome = call:wait(data.place, { timeout_ms = 30000 }).reason
		else
			outcome = tostring(call:wake(data.place))
		end
		call:log("info", "world_probe " .. data.verb .. ": " .. outcome)
		if data.stay then
			call:sleep(60000)
		end
		return nil
	end,
}
