-- acdc_member: put the caller in a call-center queue (Kazoo's
-- cf_acdc_member, kazoo-callflows.md §3; the queue, agents and documents
-- are described in scripts/lib/acdc.lua).
--
-- Data: `id` (the queue), `priority` (read, not used: callers are served
-- in the order they entered).
--
-- The caller is answered and waits (call:wait, woken when an agent may be
-- free) with position announcements when the queue enables them. The
-- caller first in line rings the available agents in the queue's strategy
-- (round robin after the last agent connected, or the agent idle the
-- longest), each for `agent_ring_timeout`; when one answers they talk, and
-- the flow stops. Exits: "_" when the queue is full, the caller waited
-- `connection_timeout` or pressed `caller_exit_key`; stop on an answer or
-- a hang-up. A queue that does not exist raises an error ("_").
--
-- Deviation: Kazoo's queue manager (another process) does the ringing;
-- here the caller first in line does it, so the trace of the caller shows
-- the agents' bridges.
local acdc = require("acdc")

return {
	description = "Wait in a call-center queue for an agent.",
	schema = {
		type = "object",
		required = { "id" },
		properties = {
			id = { type = "string" },
			priority = { type = "integer" },
		},
	},
	handle = function(call, data)
		return acdc.member(call, data)
	end,
}
