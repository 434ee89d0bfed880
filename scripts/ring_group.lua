-- ring_group: ring a list of devices, users and groups (Kazoo's
-- cf_ring_group, kazoo-callflows.md §3.1).
--
-- Data (CODE defaults):
-- * `endpoints` (required, at least one): members {id, endpoint_type
--   "device" | "user" | "group", delay (0), timeout (20), weight (1..100,
--   default 20), disable_until (gregorian seconds; the member is skipped
--   until then)}.
-- * `strategy` ("simultaneous") | "single" | "weighted_random".
-- * `timeout` (20): seconds the whole bridge rings.
-- * `repeats` (1, at least 1): how many times to ring the group.
-- * `ringback`: media the caller hears while it rings.
-- * `ringtones.internal` / `ringtones.external`: the alert info for on-net
--   / off-net callers (shown in the trace's `endpoints` event only).
-- * `ignore_forward` (true), `fail_on_single_reject`: accepted, no effect
--   in this simulator.
--
-- Each round resolves the members in order: users become their devices,
-- groups (groups/<id>: {endpoints: {"<id>": {type, weight}}}) their members
-- (for "single", ordered by weight, members without one dropped); members
-- with disable_until in the future are skipped; a second entry with the same
-- (id, delay, timeout) is dropped (Kazoo keeps the later one's place); only
-- devices ring and never the calling device; "weighted_random" shuffles by
-- weight (seeded); "simultaneous" rings in order of delay. Devices that are
-- disabled, missing or on do-not-disturb are left out (endpoints.lua).
--
-- Exits: no device to ring -> "_"; answered -> the call ends there (stop);
-- a failed round with a child for its cause ("USER_BUSY", "NO_ANSWER",
-- ...) or SIP code ("sip:486") -> that child; otherwise the next round, and
-- after the last "_".
--
-- Deviation: ring_group_toggle cannot rewrite callflow documents here, so it
-- saves ring_group_toggles/<callflow id> = {users = {"<user id>":
-- disable_until}}; for a "user" member listed there, that value replaces the
-- member's own disable_until (Kazoo edits the members in the callflow, and
-- reverses their order as it saves them; we do not).
local kazoo = require("kazoo")
local endpoints = require("endpoints")

return {
	description = "Ring a group of devices, users and groups.",
	schema = {
		type = "object",
		required = { "endpoints" },
		properties = {
			endpoints = { type = "array", minItems = 1, items = endpoints.MEMBER_SCHEMA },
			strategy = {
				type = "string",
				enum = { "simultaneous", "single", "weighted_random" },
				default = "simultaneous",
			},
			timeout = { type = "integer", default = 20 },
			repeats = { type = "integer", minimum = 1, default = 1 },
			ringback = { type = "string" },
			ringtones = {
				type = "object",
				properties = {
					internal = { type = "string" },
					external = { type = "string" },
				},
			},
			ignore_forward = { type = "boolean", default = true },
			fail_on_single_reject = { type = "boolean" },
		},
	},
	handle = function(call, data)
		local toggles = nil
		local callflow_id = kazoo.string(call.callflow_id)
		if callflow_id then
			local state = call:doc("ring_group_toggles", callflow_id)
			if state and type(state.users) == "table" then
				toggles = state.users
			end
		end
		return endpoints.run_ring_group(call, data, { toggles = toggles })
	end,
}
