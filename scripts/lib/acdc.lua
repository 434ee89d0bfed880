-- Kazoo's ACD call center (the acdc application, kazoo-callflows.md §3),
-- shared by acdc_member, acdc_agent, acdc_queue and acdc_wait_time.
--
-- Documents:
-- * `queues/<id>`: Kazoo's queue. Read here: `strategy` ("round_robin",
--   default, or "most_idle"), `connection_timeout` (s a caller waits at
--   most, 3600; below 1: no limit), `agent_ring_timeout` (s an agent's
--   phones ring, 15), `max_queue_size` (0: no limit), `caller_exit_key`
--   ("#"), `moh`, and `announcements.position_announcements_enabled`
--   (false) with `announcements.interval` (s between announcements, 30).
-- * Agents are users with `queues` (the queue ids they work).
-- * `acdc_status/<agent id>` (written here; Kazoo keeps it in its agent
--   processes): `status` ("ready", "paused", "logged_out"), `queues` (those
--   logged into), `paused_until` and `idle_since` (ms since the epoch).
-- * `acdc_queue_state/<queue id>` (written here): `last_agent` (round
--   robin) and `waits` ({at, wait_ms} of callers connected, for
--   acdc_wait_time).
--
-- Callers wait with call:wait("acdc:<queue>") and are woken
-- (call:wake) whenever an agent may have become free: an agent logs in or
-- resumes, a call with an agent ends, a caller leaves the queue.
local kazoo = require("kazoo")
local endpoints = require("endpoints")

local acdc = {}

local STATUS, STATE = "acdc_status", "acdc_queue_state"

function acdc.place(queue_id)
	return "acdc:" .. queue_id
end

-- The agent calling: the single hot-desked user of the calling device,
-- else its owner; nil when none; "multiple" when several are hot-desked.
function acdc.find_agent(call)
	local device = call.calling_device and call:doc("devices", call.calling_device)
	if not device then
		return nil
	end
	local hotdesk = type(device.hotdesk) == "table" and type(device.hotdesk.users) == "table" and device.hotdesk.users
	if hotdesk then
		local users = kazoo.sorted_keys(hotdesk)
		if #users == 1 then
			return users[1]
		elseif #users > 1 then
			return "multiple"
		end
	end
	return kazoo.string(device.owner_id)
end

-- The agent's status document (a copy), with Kazoo's reading of it: a
-- pause that ran out is "ready"; none at all is "logged_out".
function acdc.status(call, agent_id)
	local doc = call:doc(STATUS, agent_id) or {}
	local copy = { status = kazoo.string(doc.status, "logged_out"), queues = {} }
	for _, queue in (type(doc.queues) == "table" and doc.queues or {}) do
		table.insert(copy.queues, queue)
	end
	copy.paused_until = kazoo.integer(doc.paused_until)
	copy.idle_since = kazoo.integer(doc.idle_since)
	if copy.status == "paused" and copy.paused_until and copy.paused_until <= call:now() then
		copy.status = "ready"
	end
	return copy
end

function acdc.save_status(call, agent_id, status)
	call:save_doc(STATUS, agent_id, status)
end

-- Wakes the callers waiting in each of `queues`.
function acdc.wake(call, queues)
	for _, queue in queues do
		call:wake(acdc.place(queue))
	end
end

local function listed(list, value)
	return table.find(list, value) ~= nil
end

-- The agents logged into `queue_id`, ready, and with no phone on a call,
-- in the order the strategy tries them.
local function available_agents(call, queue_id, queue)
	local ready = {}
	for _, user in call:docs("users") do
		local id = kazoo.string(user.id)
		if id and not user.pvt_deleted then
			local status = acdc.status(call, id)
			if status.status == "ready" and listed(status.queues, queue_id) then
				local devices = endpoints.owned_devices(call, id)
				if #devices > 0 and #endpoints.calls_of_devices(call, devices) == 0 then
					table.insert(ready, { id = id, devices = devices, idle_since = status.idle_since or 0 })
				end
			end
		end
	end
	table.sort(ready, function(a, b)
		return a.id < b.id
	end)
	if kazoo.string(queue.strategy, "round_robin") == "most_idle" then
		table.sort(ready, function(a, b)
			if a.idle_since ~= b.idle_since then
				return a.idle_since < b.idle_since
			end
			return a.id < b.id
		end)
		return ready
	end
	-- Round robin: the agent after the last one connected, then around.
	local state = call:doc(STATE, queue_id) or {}
	local last = kazoo.string(state.last_agent)
	if not last then
		return ready
	end
	local rotated, after = {}, {}
	for _, agent in ready do
		if agent.id > last then
			table.insert(rotated, agent)
		else
			table.insert(after, agent)
		end
	end
	for _, agent in after do
		table.insert(rotated, agent)
	end
	return rotated
end

-- The callers waiting in the queue before this one (by when they entered,
-- then by when their call began).
local function position(call, queue_id, entered)
	local ahead = 0
	for _, channel in call:channels() do
		local since = channel.since or 0
		if channel.state == "waiting" and channel.slot == acdc.place(queue_id)
			and (since < entered or (since == entered and channel.call_id < call.call_id)) then
			ahead += 1
		end
	end
	return ahead + 1
end

local function record_state(call, queue_id, agent_id, wait_ms)
	local state = call:doc(STATE, queue_id) or {}
	-- Documents read are frozen: a new list.
	local waits = {}
	for _, wait in (type(state.waits) == "table" and state.waits or {}) do
		table.insert(waits, wait)
	end
	table.insert(waits, { at = call:now(), wait_ms = wait_ms })
	call:save_doc(STATE, queue_id, { last_agent = agent_id, waits = waits })
end

-- Rings the available agents in turn; true once one answered and the
-- conversation is over.
local function offer(call, queue_id, queue, entered)
	for _, agent in available_agents(call, queue_id, queue) do
		local list = {}
		for _, device in agent.devices do
			table.insert(list, { id = device })
		end
		call:emit({ event = "acdc.offer", queue_id = queue_id, agent_id = agent.id })
		local outcome = endpoints.bridge(call, list, {
			timeout_s = kazoo.integer(queue.agent_ring_timeout, 15),
		})
		if outcome.status == "answered" then
			record_state(call, queue_id, agent.id, call:now() - entered - outcome.duration_ms)
			local status = acdc.status(call, agent.id)
			status.idle_since = call:now()
			acdc.save_status(call, agent.id, status)
			acdc.wake(call, { queue_id })
			return true
		elseif outcome.status == "hangup" then
			return true
		end
	end
	return false
end

-- Kazoo's cf_acdc_member: the caller waits in the queue (music, position
-- announcements) until an agent answers (stop), the wait or the exit key
-- ends it ("_"), or it hangs up (stop). A full queue: "_" at once.
function acdc.member(call, data)
	local queue_id = kazoo.string(data.id)
	local queue = queue_id and call:doc("queues", queue_id)
	if not queue then
		error("acdc_member: no queue " .. tostring(queue_id), 0)
	end
	local place = acdc.place(queue_id)
	local max_size = kazoo.integer(queue.max_queue_size, 0) :: number
	if max_size > 0 then
		local waiting = 0
		for _, channel in call:channels() do
			if channel.state == "waiting" and channel.slot == place then
				waiting += 1
			end
		end
		if waiting >= max_size then
			call:emit({ event = "acdc.queue_full", queue_id = queue_id, size = waiting })
			return "_"
		end
	end
	call:answer()
	local timeout_s = kazoo.integer(queue.connection_timeout, 3600) :: number
	local max_wait = timeout_s >= 1 and timeout_s * 1000 or nil
	local announcements = type(queue.announcements) == "table" and queue.announcements or {}
	local announce = kazoo.boolean(announcements.position_announcements_enabled, false)
	local interval = (kazoo.integer(announcements.interval, 30) :: number) * 1000
	local exit_key = kazoo.string(queue.caller_exit_key, "#") :: string
	local entered = call:now()
	call:emit({ event = "acdc.enter", queue_id = queue_id, position = position(call, queue_id, entered) })
	local next_announcement = entered + interval
	while true do
		if position(call, queue_id, entered) == 1 and offer(call, queue_id, queue, entered) then
			return call:stop()
		end
		local now = call:now()
		local until_ms = max_wait and entered + max_wait or nil
		if until_ms and now >= until_ms then
			call:emit({ event = "acdc.timeout", queue_id = queue_id })
			acdc.wake(call, { queue_id })
			return "_"
		end
		local wait_ms = until_ms and until_ms - now or nil
		if announce then
			local to_next = math.max(0, next_announcement - now)
			wait_ms = wait_ms and math.min(wait_ms, to_next) or to_next
		end
		local waited = call:wait(place, { timeout_ms = wait_ms, digits = exit_key, since = entered })
		if waited.reason == "hangup" then
			acdc.wake(call, { queue_id })
			return call:stop()
		elseif waited.reason == "digit" then
			call:emit({ event = "acdc.exit", queue_id = queue_id, key = waited.digit })
			acdc.wake(call, { queue_id })
			return "_"
		elseif announce and call:now() >= next_announcement then
			call:play("queue-you_are_at_position")
			call:say(tostring(position(call, queue_id, entered)), { type = "number" })
			next_announcement = call:now() + interval
		end
	end
end

-- Kazoo's cf_acdc_wait_time: the queue's average wait (s, the callers
-- connected in the last `window` s) against the integer child keys: the
-- greatest key not above it, else "_".
function acdc.wait_time(call, data)
	local queue_id = kazoo.string(data.id) or ""
	local window_ms = (kazoo.integer(data.window, 3600) :: number) * 1000
	local state = call:doc(STATE, queue_id) or {}
	local total, count = 0, 0
	for _, wait in (type(state.waits) == "table" and state.waits or {}) do
		if (kazoo.integer(wait.at, 0) :: number) >= call:now() - window_ms then
			total += kazoo.integer(wait.wait_ms, 0) :: number
			count += 1
		end
	end
	local average = count > 0 and math.floor(total / count / 1000) or 0
	local best, best_key = nil, nil
	for _, key in call:children() do
		local threshold = tonumber(key)
		if threshold and threshold == math.floor(threshold) and average >= threshold
			and (best == nil or threshold > best) then
			best, best_key = threshold, key
		end
	end
	call:emit({ event = "acdc.wait_time", queue_id = queue_id, average_s = average, waits = count })
	return best_key or "_"
end

return acdc
