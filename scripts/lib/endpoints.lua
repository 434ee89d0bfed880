-- endpoints: Kazoo's endpoint building and bridging, shared by the bridging
-- modules (user, device, ring_group, group, page_group, route_to_cid,
-- intercom, group_pickup, group_pickup_feature) and by any other module that
-- rings devices. Load it with `local endpoints = require("endpoints")`.
--
-- What Kazoo spreads over kz_endpoint, kz_attributes, cf_util and
-- cf_ring_group lives here:
--
-- Time
--   endpoints.GREGORIAN_OFFSET            62167219200: Kazoo's gregorian
--                                         seconds = unix seconds + this
--   endpoints.now_gregorian(call) -> n    the call's clock in gregorian seconds
--   endpoints.is_active(member, now, disable_until?) -> boolean
--                                         a ring group member is active when
--                                         its disable_until (gregorian
--                                         seconds, default 0) is in the past;
--                                         `disable_until` overrides the
--                                         member's own value when given
--
-- Who is who
--   endpoints.device_owners(doc) -> {id}  the users a device belongs to:
--                                         its hotdesk users if any, else its
--                                         owner_id (Kazoo's attributes/owned)
--   endpoints.owned_devices(call, user_id | {user_id}) -> {device_id}
--                                         devices owned by the user(s), by id
--   endpoints.caller_owner(call) -> id?   the caller's user: the call
--                                         variable "owner_id" when a module
--                                         set it (Kazoo's KVS owner_id),
--                                         else the owner of call.calling_device
--   endpoints.group_doc(call, id) -> doc? a groups/ document (nil if deleted)
--   endpoints.contains(list, value) -> boolean
--
-- Building endpoints (Kazoo's kz_endpoint:build)
--   endpoints.build(call, device_id, props) -> {endpoint} | nil, reason
--       The call:bridge endpoints that ring one device, or nil and Kazoo's
--       reason: "not_found", "endpoint_deleted", "endpoint_disabled",
--       "owner_called_self", "endpoint_called_self", "do_not_disturb",
--       "no_endpoints". `props` are the node data or ring group member:
--       delay (s, >0 to count), timeout (s, >0 to count, else the bridge's
--       overall timeout), can_call_self (false: neither the calling device
--       nor another device of the caller's owner is rung), source (the
--       module name; ring_group does not follow call forwards set for direct
--       calls only). A device with call_forward {enabled, number} also gets
--       an off-net endpoint {number = ...} after it (or instead of it with
--       `substitute: true`); the device's own call_forward wins when
--       enabled, else the account's, the device's and the owner's merge.
--       Do-not-disturb counts when set on the account, owner or device.
--   endpoints.member_props(member, source) -> props
--       A ring group member's settings as build props: a copy of the member
--       with `source` set.
--   endpoints.add(call, list, device_id, props, prefix) -> boolean
--       build, then append the endpoints to `list`; when the device cannot
--       ring, logs `prefix .. device_id .. ": " .. reason` (info) instead.
--
-- Ring groups (Kazoo's cf_ring_group)
--   endpoints.MEMBER_SCHEMA    the schema of a ring group or page group
--                              member {id, endpoint_type, delay, timeout,
--                              weight}
--   endpoints.resolve_members(call, data, opts) -> {entry}
--       Resolves data.endpoints ({id, endpoint_type, delay, timeout, weight,
--       disable_until}) into ordered entries {id, member, weight}: inactive
--       members skipped, users to their devices, groups to their members,
--       (id, delay, timeout) duplicates collapsed, devices only, the calling
--       device removed, weighted_random shuffled. opts.toggles maps user ids
--       to a disable_until that overrides the member's (ring_group_toggle).
--   endpoints.weighted_shuffle(list) -> list   Kazoo's weighted random order
--       of {weight, ...} entries, with the call's seeded math.random
--   endpoints.ring_group_endpoints(call, data, opts) -> {endpoint}
--       resolve_members, then build each; simultaneous sorts by delay
--   endpoints.run_ring_group(call, data, opts) -> module result
--       The whole ring_group module: repeats, exits.
--
-- Bridging
--   endpoints.bridge(call, list, opts) -> outcome
--       call:bridge(list, {timeout_s, strategy, ringback, page}); page is
--       forced on when the call variable "auto_answer" is true (intercom).
--       When the bridge line of the trace would not show everything (a
--       delay or own timeout, paging, ringback, opts.details), an
--       `endpoints` event lists each endpoint first as "id[@delay][/timeout]"
--       (the timeout when it differs from the bridge's).
--   endpoints.failure_child(call, outcome) -> key?
--       Kazoo's bridge-failure rule for a busy / no_answer / failed outcome:
--       the child keyed by the cause ("USER_BUSY"), else by "sip:<code>"
--       ("sip:486"), else nil (continue with "_"). Nil for other statuses.
--   endpoints.finish(call, outcome) -> module result
--       answered: call:stop(); failure: failure_child; otherwise nil.
--   endpoints.timeout(value, default) -> seconds
--       A node's overall timeout: `value` read as an integer, `default` when
--       absent or not positive (a 0 timeout, the device schema's default,
--       would end the bridge at once here; Kazoo hands it to FreeSWITCH,
--       whose behaviour for it is unverified).
--
-- Pickup (Kazoo's cf_group_pickup)
--   endpoints.pickup_properties(extra?) -> properties
--       The schema properties of params, with `extra`'s added.
--   endpoints.pickup(call, params) -> module result
--       params {device_id, user_id, group_id, approved_*}; see
--       group_pickup.lua. The call API cannot see other calls, so there is
--       never a ringing call to pick up.
local kazoo = require("kazoo")

local endpoints = {}

endpoints.GREGORIAN_OFFSET = 62167219200

local DEFAULT_TIMEOUT_S = 20

-- Kazoo's cf_ring_group and acdc do not follow call forwards that are for
-- direct calls only.
local NON_DIRECT_SOURCES = { ring_group = true }

--------------------------------------------------------------------------
-- Small utilities

local function copy(t)
	local out = {}
	if type(t) == "table" then
		for k, v in t do
			out[k] = v
		end
	end
	return out
end

local function list_of(value)
	if type(value) == "table" then
		return value
	end
	return {}
end

function endpoints.contains(list, value)
	for _, v in list do
		if v == value then
			return true
		end
	end
	return false
end
local contains = endpoints.contains

-- The id of a member or document: "_id", else "id" (kz_doc:id).
local function member_id(member)
	if type(member) ~= "table" then
		return nil
	end
	return kazoo.string(member._id) or kazoo.string(member.id)
end

--------------------------------------------------------------------------
-- Time

function endpoints.now_gregorian(call)
	return math.floor(call:now() / 1000) + endpoints.GREGORIAN_OFFSET
end

function endpoints.is_active(member, now, disable_until)
	local value = disable_until
	if value == nil then
		value = member.disable_until
	end
	return now > (kazoo.integer(value, 0) :: number)
end

--------------------------------------------------------------------------
-- Who is who

function endpoints.device_owners(doc)
	local owners = {}
	local hotdesk = type(doc.hotdesk) == "table" and doc.hotdesk.users
	if type(hotdesk) == "table" and next(hotdesk) ~= nil then
		for _, user in json.keys(hotdesk) do
			table.insert(owners, user)
		end
	end
	if #owners == 0 and kazoo.string(doc.owner_id) then
		table.insert(owners, doc.owner_id)
	end
	return owners
end

function endpoints.owned_devices(call, users)
	if type(users) == "string" then
		users = { users }
	end
	local found = {}
	for _, doc in call:docs("devices") do
		if not doc.pvt_deleted then
			for _, owner in endpoints.device_owners(doc) do
				if contains(users, owner) then
					table.insert(found, doc.id)
					break
				end
			end
		end
	end
	return found
end

function endpoints.caller_owner(call)
	local set = call:get("owner_id")
	if type(set) == "string" and set ~= "" then
		return set
	end
	local device = call.calling_device and call:doc("devices", call.calling_device)
	if device then
		return endpoints.device_owners(device)[1]
	end
	return nil
end

function endpoints.group_doc(call, id)
	local doc = id and call:doc("groups", id)
	if doc and not doc.pvt_deleted then
		return doc
	end
	return nil
end

--------------------------------------------------------------------------
-- Building endpoints

local function dnd_enabled(doc)
	return type(doc) == "table"
		and type(doc.do_not_disturb) == "table"
		and kazoo.boolean(doc.do_not_disturb.enabled, false) == true
end

-- The call_forward settings that apply to a device (kz_endpoint's merge).
local function call_forward_of(call, device, owner)
	local own = type(device.call_forward) == "table" and device.call_forward or {}
	if kazoo.boolean(own.enabled, false) then
		return own
	end
	local merged = {}
	for _, source in { call:account().call_forward, own, owner and owner.call_forward } do
		if type(source) == "table" then
			for k, v in source do
				merged[k] = v
			end
		end
	end
	return merged
end

local function forwards(forward, source)
	if not kazoo.boolean(forward.enabled, false) or not kazoo.string(forward.number) then
		return false
	end
	return kazoo.boolean(forward.direct_calls_only, true) == false or not NON_DIRECT_SOURCES[source]
end

-- Whether a device rings while it is on another call: its own
-- call_waiting.enabled, else its owner's, else on (Kazoo's default). With
-- it off, a device on a call is busy.
local function call_waiting_on(doc, owner)
	for _, settings in { doc.call_waiting, owner and owner.call_waiting } do
		local enabled = type(settings) == "table" and kazoo.boolean(settings.enabled)
		if enabled ~= nil then
			return enabled
		end
	end
	return true
end

function endpoints.build(call, device_id, props)
	props = props or {}
	if not kazoo.string(device_id) then
		return nil, "endpoint_id_undefined"
	end
	local doc = call:doc("devices", device_id)
	if not doc then
		return nil, "not_found"
	end
	if doc.pvt_deleted then
		return nil, "endpoint_deleted"
	end
	if kazoo.boolean(doc.enabled, true) == false then
		return nil, "endpoint_disabled"
	end
	local owner_id = endpoints.device_owners(doc)[1]
	local can_call_self = kazoo.boolean(props.can_call_self, false)
	if not can_call_self then
		local caller = endpoints.caller_owner(call)
		if caller and owner_id and caller == owner_id then
			return nil, "owner_called_self"
		end
		if call.calling_device and call.calling_device == device_id then
			return nil, "endpoint_called_self"
		end
	end
	local owner = owner_id and call:doc("users", owner_id)
	if dnd_enabled(call:account()) or dnd_enabled(owner) or dnd_enabled(doc) then
		return nil, "do_not_disturb"
	end

	local delay = kazoo.integer(props.delay, 0) :: number
	local timeout = kazoo.integer(props.timeout, 0) :: number
	local function shaped(endpoint)
		if delay > 0 then
			endpoint.delay = delay
		end
		if timeout > 0 then
			endpoint.timeout = timeout
		end
		return endpoint
	end

	local built = {}
	local forward = call_forward_of(call, doc, owner)
	local forwarded = forwards(forward, kazoo.string(props.source, ""))
	if not (forwarded and kazoo.boolean(forward.substitute, false)) then
		local endpoint = { id = device_id }
		if not call_waiting_on(doc, owner) then
			-- Only "off" is said: the bridge takes call waiting to be on.
			endpoint.call_waiting = false
		end
		table.insert(built, shaped(endpoint))
	end
	if forwarded then
		table.insert(built, shaped({ number = forward.number }))
	end
	if #built == 0 then
		return nil, "no_endpoints"
	end
	return built
end

function endpoints.member_props(member, source)
	local props = copy(member)
	props.source = source
	return props
end

function endpoints.add(call, list, device_id, props, prefix)
	local built, reason = endpoints.build(call, device_id, props)
	if not built then
		call:log("info", prefix .. device_id .. ": " .. reason)
		return false
	end
	for _, ep in built do
		table.insert(list, ep)
	end
	return true
end

--------------------------------------------------------------------------
-- Ring groups

endpoints.MEMBER_SCHEMA = {
	type = "object",
	required = { "endpoint_type", "id" },
	properties = {
		id = { type = "string", minLength = 1, maxLength = 128 },
		endpoint_type = { type = "string", enum = { "device", "user", "group" } },
		delay = { type = "integer", default = 0 },
		timeout = { type = "integer", default = 20 },
		weight = { type = "integer", minimum = 1, maximum = 100 },
	},
}

local function weight_of(member, default)
	local w = kazoo.integer(type(member) == "table" and member.weight or nil)
	if w == nil then
		return default
	end
	return math.clamp(w, 1, 100)
end

-- Entries resolved so far: {type, id, delay, timeout, weight, member}.
local function is_resolved(id, delay, timeout, acc)
	for _, e in acc do
		if e.id == id and e.delay == delay and e.timeout == timeout then
			return true
		end
	end
	return false
end

-- A group's members as ring group members: the group's entry in the ring
-- group (`member`) supplies the default delay and timeout and its weight.
local function group_members(call, member, id, weight, strategy)
	local doc = endpoints.group_doc(call, id)
	if not doc then
		call:log("warning", "unable to look up the members of group " .. id)
		return {}
	end
	local members = type(doc.endpoints) == "table" and doc.endpoints or {}
	local function create(key, endpoint)
		local m = copy(member)
		m.endpoint_type = kazoo.string(endpoint.type)
		m.id = key
		m._id = nil
		m.delay = kazoo.integer(endpoint.delay, kazoo.integer(member.delay, 0))
		m.timeout = kazoo.integer(endpoint.timeout, kazoo.integer(member.timeout, DEFAULT_TIMEOUT_S))
		m.weight = weight
		return m
	end
	local out = {}
	if strategy == "single" then
		-- Ordered by the members' own weights; members without one are
		-- dropped, and of two with the same weight the later one in the
		-- document is kept (Kazoo's orddict:store in a foldl).
		local by_weight = {}
		local weights = {}
		for _, key in json.keys(members) do
			local endpoint = type(members[key]) == "table" and members[key] or {}
			local w = weight_of(endpoint, nil)
			if w then
				if by_weight[w] == nil then
					table.insert(weights, w)
				end
				by_weight[w] = create(key, endpoint)
			end
		end
		table.sort(weights)
		for _, w in weights do
			table.insert(out, by_weight[w])
		end
	else
		-- The reverse of the document's order (Kazoo prepends in a foldl).
		for _, key in json.keys(members) do
			local endpoint = type(members[key]) == "table" and members[key] or {}
			table.insert(out, 1, create(key, endpoint))
		end
	end
	return out
end

local resolve_list

-- Resolves one member onto the front of `acc` (Kazoo folds from the last
-- member to the first, prepending).
local function resolve_one(call, member, acc, strategy)
	local id = member_id(member)
	local delay = kazoo.integer(member.delay, 0)
	local timeout = kazoo.integer(member.timeout, DEFAULT_TIMEOUT_S)
	local kind = kazoo.string(member.endpoint_type, "device")
	local weight = weight_of(member, 20)
	if not id or is_resolved(id, delay, timeout, acc) then
		return acc
	end
	if kind == "group" then
		local resolved = resolve_list(call, group_members(call, member, id, weight, strategy), acc, strategy)
		table.insert(resolved, 1, { type = "group", id = id, delay = delay, timeout = timeout })
		return resolved
	elseif kind == "user" then
		local out = copy(acc)
		table.insert(out, 1, { type = "user", id = id, delay = delay, timeout = timeout })
		local devices = endpoints.owned_devices(call, id)
		for i = #devices, 1, -1 do
			if not is_resolved(devices[i], delay, timeout, out) then
				table.insert(
					out,
					1,
					{ type = "device", id = devices[i], delay = delay, timeout = timeout, weight = weight, member = member }
				)
			end
		end
		return out
	elseif kind == "device" then
		local out = copy(acc)
		table.insert(out, 1, { type = "device", id = id, delay = delay, timeout = timeout, weight = weight, member = member })
		return out
	end
	-- Kazoo's case clause fails on an unknown type: the module crashes.
	error("unknown endpoint_type " .. kind .. " for member " .. id, 0)
end

function resolve_list(call, members, acc, strategy)
	for i = #members, 1, -1 do
		acc = resolve_one(call, members[i], acc, strategy)
	end
	return acc
end

-- Kazoo's weighted random order (cf_ring_group:weighted_random_sort, as in
-- Kazoo 4.x: 5.0's version returns weight-tagged tuples that then fail to
-- build, which looks like a regression). `list` holds tables with a
-- `weight`; ties keep their order. Each round draws a pivot in 1..total
-- weight, takes the entry with the largest cumulative weight <= pivot (the
-- lightest entry when there is none), then one at random among the entries
-- of that weight; picks are prepended, so the first pick rings last.
function endpoints.weighted_shuffle(list)
	local remaining = {}
	for i, e in list do
		table.insert(remaining, { e = e, index = i })
	end
	table.sort(remaining, function(a, b)
		if a.e.weight ~= b.e.weight then
			return a.e.weight < b.e.weight
		end
		return a.index < b.index
	end)
	local picked = {}
	while #remaining > 0 do
		-- Cumulative weights, heaviest total first (Kazoo builds the list
		-- reversed).
		local intervals = {}
		local sum = 0
		for i, r in remaining do
			sum += r.e.weight
			table.insert(intervals, 1, { cum = sum, at = i })
		end
		local pivot = math.random(sum)
		local chosen = intervals[#intervals]
		for _, iv in intervals do
			if iv.cum <= pivot then
				chosen = iv
				break
			end
		end
		local w = remaining[chosen.at].e.weight
		local same = {}
		for _, iv in intervals do
			if remaining[iv.at].e.weight == w then
				table.insert(same, iv)
			end
		end
		local pick = same[math.random(#same)]
		table.insert(picked, 1, remaining[pick.at].e)
		table.remove(remaining, pick.at)
	end
	return picked
end

function endpoints.resolve_members(call, data, opts)
	opts = opts or {}
	local strategy = kazoo.string(data.strategy, "simultaneous")
	local toggles = type(opts.toggles) == "table" and opts.toggles or {}
	local now = endpoints.now_gregorian(call)
	local active = {}
	for _, member in list_of(data.endpoints) do
		if type(member) ~= "table" then
			-- Kazoo reads each member as an object and crashes on anything else.
			error("ring group endpoints must be objects {id, endpoint_type}, not " .. type(member), 0)
		end
		local override = nil
		if kazoo.string(member.endpoint_type) == "user" and member_id(member) then
			override = toggles[member_id(member)]
		end
		if endpoints.is_active(member, now, override) then
			table.insert(active, member)
		end
	end
	local resolved = resolve_list(call, active, {}, strategy)
	local out = {}
	for _, e in resolved do
		if e.type == "device" and e.id ~= call.calling_device then
			table.insert(out, { id = e.id, member = e.member, weight = e.weight })
		end
	end
	if strategy == "weighted_random" then
		out = endpoints.weighted_shuffle(out)
	end
	return out
end

function endpoints.ring_group_endpoints(call, data, opts)
	local built = {}
	for _, entry in endpoints.resolve_members(call, data, opts) do
		endpoints.add(call, built, entry.id, endpoints.member_props(entry.member, "ring_group"), "not ringing ")
	end
	if kazoo.string(data.strategy, "simultaneous") == "simultaneous" then
		-- Stable sort by delay.
		local indexed = {}
		for i, ep in built do
			indexed[i] = { ep = ep, i = i }
		end
		table.sort(indexed, function(a, b)
			local da, db = a.ep.delay or 0, b.ep.delay or 0
			if da ~= db then
				return da < db
			end
			return a.i < b.i
		end)
		for i, x in indexed do
			built[i] = x.ep
		end
	end
	return built
end

--------------------------------------------------------------------------
-- Bridging

local function describe(ep, timeout_s)
	local text = ep.id or ep.number or "?"
	if ep.delay and ep.delay > 0 then
		text ..= "@" .. ep.delay
	end
	if ep.timeout and ep.timeout ~= timeout_s then
		text ..= "/" .. ep.timeout
	end
	return text
end

function endpoints.bridge(call, list, opts)
	opts = opts or {}
	local timeout_s = opts.timeout_s or DEFAULT_TIMEOUT_S
	local page = opts.page == true or call:get("auto_answer") == true
	local detailed = page or opts.ringback ~= nil or opts.details ~= nil
	local shown = {}
	for _, ep in list do
		if (ep.delay and ep.delay > 0) or (ep.timeout and ep.timeout ~= timeout_s) then
			detailed = true
		end
		table.insert(shown, describe(ep, timeout_s))
	end
	if detailed then
		local event = copy(opts.details)
		event.event = "endpoints"
		event.endpoints = shown
		if page then
			event.page = true
		end
		event.ringback = opts.ringback
		call:emit(event)
	end
	return call:bridge(list, {
		timeout_s = timeout_s,
		strategy = opts.strategy == "single" and "single" or "simultaneous",
		ringback = opts.ringback,
		page = page,
	})
end

local FAILURES = { busy = true, no_answer = true, failed = true }

function endpoints.failure_child(call, outcome)
	if not FAILURES[outcome.status] then
		return nil
	end
	local cause = kazoo.string(outcome.cause, "UNSPECIFIED") :: string
	if call:has_child(cause) then
		return cause
	end
	local code = outcome.sip and outcome.sip > 0 and ("sip:" .. outcome.sip) or "sip:600"
	if call:has_child(code) then
		return code
	end
	return nil
end

function endpoints.finish(call, outcome)
	if outcome.status == "answered" then
		return call:stop()
	end
	return endpoints.failure_child(call, outcome)
end

function endpoints.timeout(value, default)
	local t = kazoo.integer(value, default) :: number
	if t <= 0 then
		return default
	end
	return t
end

local function alert_for(call, data)
	local ringtones = type(data.ringtones) == "table" and data.ringtones or {}
	local which = call.inception == "offnet" and "external" or "internal"
	return kazoo.string(ringtones[which])
end

function endpoints.run_ring_group(call, data, opts)
	local repeats = math.max(1, kazoo.integer(data.repeats, 1) :: number)
	local strategy = kazoo.string(data.strategy, "simultaneous")
	local timeout = endpoints.timeout(data.timeout, DEFAULT_TIMEOUT_S)
	local alert = alert_for(call, data)
	for round = 1, repeats do
		local list = endpoints.ring_group_endpoints(call, data, opts)
		if #list == 0 then
			call:log("info", "ring group has no endpoints; continuing")
			return nil
		end
		local details = nil
		if alert or repeats > 1 then
			details = { alert_info = alert, round = repeats > 1 and round or nil }
		end
		local outcome = endpoints.bridge(call, list, {
			timeout_s = timeout,
			strategy = strategy == "simultaneous" and "simultaneous" or "single",
			ringback = kazoo.string(data.ringback),
			details = details,
		})
		if outcome.status == "answered" then
			return call:stop()
		elseif outcome.status == "hangup" then
			return call:stop()
		end
		local key = endpoints.failure_child(call, outcome)
		if key then
			return key
		end
	end
	return nil
end

--------------------------------------------------------------------------
-- Pickup

-- A group's devices for pickup: its device members, and the devices of
-- its other members (users), as one sorted list.
local function group_pickup_devices(call, group_id)
	local doc = endpoints.group_doc(call, group_id)
	if not doc or type(doc.endpoints) ~= "table" then
		return {}
	end
	local devices, users = {}, {}
	for _, key in kazoo.sorted_keys(doc.endpoints) do
		local m = doc.endpoints[key]
		if type(m) == "table" and m.type == "device" then
			table.insert(devices, key)
		else
			table.insert(users, key)
		end
	end
	if #users > 0 then
		for _, id in endpoints.owned_devices(call, users) do
			table.insert(devices, id)
		end
		table.sort(devices)
	end
	return devices
end

-- The target params.<prefix>device_id, else <prefix>user_id, else
-- <prefix>group_id names: its kind and id; nil when none is given.
local function named_target(params, prefix)
	for _, kind in { "device", "user", "group" } do
		local id = kazoo.string(params[prefix .. kind .. "_id"])
		if id then
			return kind, id
		end
	end
	return nil
end

-- The devices of a pickup target: the device, the user's devices, or the
-- group's (group_pickup_devices).
local function target_devices(call, kind, id)
	if kind == "device" then
		return { id }
	elseif kind == "user" then
		return endpoints.owned_devices(call, id)
	end
	return group_pickup_devices(call, id)
end

-- Whether the caller may act on others' calls: the first of
-- params.approved_device_id, approved_user_id, approved_group_id given
-- decides (the calling device is that device, or one of that user's or
-- group's); `default` when none is given (pickup and intercept: true;
-- eavesdrop: false).
function endpoints.approved(call, params, default)
	local kind, id = named_target(params, "approved_")
	if not kind then
		return default
	end
	return call.calling_device ~= nil and contains(target_devices(call, kind, id), call.calling_device)
end

local function allowed_to_intercept(call, params)
	return endpoints.approved(call, params, true)
end

-- The calls of the world that involve any of `devices`: ringing one,
-- answered by one, or made from one (in the order they began).
function endpoints.calls_of_devices(call, devices)
	local found = {}
	for _, channel in call:channels() do
		local involved = contains(devices, channel.answered_by or "")
			or (channel.calling_device ~= nil and contains(devices, channel.calling_device))
		for _, endpoint in channel.ringing do
			involved = involved or contains(devices, endpoint)
		end
		if involved then
			table.insert(found, channel)
		end
	end
	return found
end

-- The devices of params.device_id, else of params.user_id (Kazoo's
-- cf_eavesdrop looks no further).
function endpoints.device_or_user_devices(call, params)
	local device = kazoo.string(params.device_id)
	if device then
		return { device }
	end
	local user = kazoo.string(params.user_id)
	return user and endpoints.owned_devices(call, user) or {}
end

function endpoints.pickup_properties(extra)
	local properties = {
		device_id = { type = "string" },
		user_id = { type = "string" },
		group_id = { type = "string" },
		approved_device_id = { type = "string" },
		approved_user_id = { type = "string" },
		approved_group_id = { type = "string" },
	}
	for key, value in extra or {} do
		properties[key] = value
	end
	return properties
end

-- Picks up (or with opts.intercept, intercepts) a call of the target in
-- params: see group_pickup.lua and intercept.lua.
function endpoints.pickup(call, params, opts)
	local intercept = opts ~= nil and opts.intercept == true
	if not allowed_to_intercept(call, params) then
		call:answer()
		call:say("you have no permission to intercept this call")
		return call:stop()
	end
	local kind, id = named_target(params, "")
	if not kind then
		-- Kazoo's find_sip_users has no clause for a missing group id.
		error((intercept and "intercept" or "group_pickup") .. " needs device_id, user_id or group_id", 0)
	end
	local devices = target_devices(call, kind, id)
	-- The calls ringing any of those devices, earliest first (Kazoo picks
	-- up the first channel it finds).
	local ringing = {}
	for _, channel in call:channels() do
		if channel.state == "ringing" then
			for _, endpoint in channel.ringing do
				if contains(devices, endpoint) then
					table.insert(ringing, channel)
					break
				end
			end
		elseif intercept and channel.state == "answered" and contains(devices, channel.answered_by) then
			-- Kazoo's intercept: Unbridged-Only and Unanswered-Only false.
			table.insert(ringing, channel)
		end
	end
	-- (An empty list would show as {} in the trace: leave it out.)
	call:emit({ event = intercept and "intercept_search" or "pickup_search", devices = #devices > 0 and devices or nil, ringing = #ringing })
	call:answer()
	if #devices == 0 then
		call:play("system_media/pickup-no_users")
		return call:stop()
	end
	if #ringing == 0 then
		call:play("system_media/pickup-no_channels")
		return call:stop()
	end
	call:pickup(ringing[1].call_id, { intercept = intercept })
	return call:stop()
end

return endpoints
