-- route_to_cid: ring the users and devices whose caller id number is the
-- number dialled (Kazoo's cf_route_to_cid, kazoo-callflows.md §3.1).
--
-- Data (CODE defaults):
-- * `cid_types` (["internal"]): which caller ids to compare
--   (caller_id.<type>.number of users/ and devices/ documents).
-- * `endpoint_types` ([]): which kinds of document may match, "user" and/or
--   "device". As in Kazoo, the default empty list matches nothing.
-- * `timeout` (20): seconds to ring, for the whole bridge and each member.
-- * `can_call_self`, `can_text_self`, `delay`, `static_invite`,
--   `suppress_clid`: accepted; Kazoo does not pass them on (every member
--   gets delay 0), so they have no effect.
--
-- The number compared is the callee id number, the dialled number as
-- received (call.to). Matches are listed per cid type (the last type's
-- first), in id order within a type, and rung as a simultaneous ring group
-- {endpoints = matches, timeout}; the node's other data (repeats, ringback,
-- ringtones) applies too, as in Kazoo (cf_group then cf_ring_group).
--
-- Exits: no match -> "_"; otherwise as ring_group: answered -> stop; a
-- failure with a child for its cause or SIP code -> that child; else "_".
local kazoo = require("kazoo")
local endpoints = require("endpoints")

local function strings(value, default)
	if type(value) ~= "table" then
		return default
	end
	local out = {}
	for _, v in value do
		if type(v) == "string" then
			table.insert(out, v)
		end
	end
	return out
end

-- Users and devices with caller_id.<cid_type>.number == number, by id.
local function lookup(call, number, cid_type, endpoint_types, timeout)
	local rows = {}
	for _, kind in { { "users", "user" }, { "devices", "device" } } do
		for _, doc in call:docs(kind[1]) do
			local ids = type(doc.caller_id) == "table" and doc.caller_id or {}
			local entry = ids[cid_type]
			if type(entry) == "table" and entry.number == number then
				table.insert(rows, { id = doc.id, kind = kind[2] })
			end
		end
	end
	table.sort(rows, function(a, b)
		return a.id < b.id
	end)
	local out = {}
	for _, row in rows do
		if endpoints.contains(endpoint_types, row.kind) then
			table.insert(out, { endpoint_type = row.kind, id = row.id, delay = 0, timeout = timeout })
		end
	end
	return out
end

return {
	description = "Ring the users and devices whose caller id is the dialled number.",
	schema = {
		type = "object",
		properties = {
			cid_types = { type = "array", items = { type = "string" }, default = { "internal" } },
			endpoint_types = { type = "array", items = { type = "string" }, default = {} },
			timeout = { type = "integer", default = 0 },
			delay = { type = "integer", default = 0 },
			can_call_self = { type = "boolean" },
			can_text_self = { type = "boolean" },
			static_invite = { type = "string" },
			suppress_clid = { type = "boolean" },
		},
	},
	handle = function(call, data)
		local number = call.to
		local timeout = kazoo.integer(data.timeout, 20)
		local cid_types = strings(data.cid_types, { "internal" })
		local endpoint_types = strings(data.endpoint_types, {})
		local found = {}
		for _, cid_type in cid_types do
			local matches = lookup(call, number, cid_type, endpoint_types, timeout)
			for i = #matches, 1, -1 do
				table.insert(found, 1, matches[i])
			end
		end
		if #found == 0 then
			call:log(
				"info",
				string.format(
					"route_to_cid: no %s has caller id %s; continuing",
					#endpoint_types > 0 and table.concat(endpoint_types, " or ") or "endpoint type (endpoint_types is empty)",
					tostring(number)
				)
			)
			return nil
		end
		local ring = {}
		for k, v in data do
			ring[k] = v
		end
		ring.strategy = "simultaneous"
		ring.endpoints = found
		ring.timeout = timeout
		return endpoints.run_ring_group(call, ring, {})
	end,
}
