-- group: the legacy group module (Kazoo's cf_group, kazoo-callflows.md §3.1).
--
-- With a non-empty `endpoints` list it behaves exactly like ring_group (same
-- data, same exits; see ring_group.lua), except that ring_group_toggle's
-- state does not apply (Kazoo's toggle only edits ring_group nodes).
-- Kazoo's schema types these endpoints as strings, but the code reads them as
-- ring group members {id, endpoint_type, ...} and crashes on strings: we
-- accept both in the schema and, like Kazoo, fail (continue to "_") on
-- strings.
--
-- Otherwise it rings the members of the group document `id`
-- (groups/<id>: {endpoints: {"<id>": {type: "device" | "user", delay,
-- timeout}}, timeout, strategy, ringback, ignore_forward}): devices first,
-- then the devices of users, each device once and never the calling device.
-- A member without a type counts both as a device and as a user (Kazoo's
-- defaults). The document's `timeout` (20), `strategy` ("simultaneous"),
-- `ringback` and `ignore_forward` win over the node's. It answers the call
-- first, then rings once (`repeats` is ignored, as in Kazoo).
-- Order, as Kazoo's: the device members in document order, then each user
-- member's devices (document order of the users, device ids sorted) are
-- built in turn (so "not ringing" logs come in that order), and the bridge
-- gets them reversed (Kazoo prepends each to its list): with the "single"
-- strategy the last user's last device rings first.
--
-- Exits: no id / unknown group -> "_"; nothing to ring -> "_" (after
-- answering); answered -> the call ends there (stop); a failed bridge -> the
-- child for its cause ("USER_BUSY"), else its SIP code ("sip:486"), else "_".
local kazoo = require("kazoo")
local endpoints = require("endpoints")

-- The first of the documents' values for `key` (kz_json:find).
local function find(key, docs, default)
	for _, doc in docs do
		if doc[key] ~= nil then
			return doc[key]
		end
	end
	return default
end

local function group_doc_endpoints(call, doc)
	local members = type(doc.endpoints) == "table" and doc.endpoints or {}
	local keys = json.keys(members)
	local seen = {}
	local built = {}
	local function add(device_id, member)
		if seen[device_id] or device_id == call.calling_device then
			return
		end
		seen[device_id] = true
		local one = {}
		if endpoints.add(call, one, device_id, endpoints.member_props(member, "group"), "group: not ringing ") then
			table.insert(built, one)
		end
	end
	for _, key in keys do
		local member = type(members[key]) == "table" and members[key] or {}
		if kazoo.string(member.type, "device") == "device" then
			add(key, member)
		end
	end
	for _, key in keys do
		local member = type(members[key]) == "table" and members[key] or {}
		if kazoo.string(member.type, "user") == "user" then
			for _, device_id in endpoints.owned_devices(call, key) do
				add(device_id, member)
			end
		end
	end
	local list = {}
	for i = #built, 1, -1 do
		for _, ep in built[i] do
			table.insert(list, ep)
		end
	end
	return list
end

return {
	description = "Ring a group (legacy; prefer ring_group).",
	schema = {
		type = "object",
		properties = {
			id = { type = "string" },
			endpoints = {
				type = "array",
				default = {},
				items = { type = { "string", "object" } },
			},
			strategy = { type = "string", enum = { "single", "simultaneous" }, default = "simultaneous" },
			timeout = { type = "integer", default = 20 },
			repeats = { type = "integer", default = 1 },
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
		if type(data.endpoints) == "table" and #data.endpoints > 0 then
			return endpoints.run_ring_group(call, data, {})
		end
		local id = kazoo.string(data.id)
		local doc = endpoints.group_doc(call, id)
		if not doc then
			call:log("info", "group: unable to open group " .. tostring(id) .. "; continuing")
			return nil
		end
		local list = group_doc_endpoints(call, doc)
		local timeout = endpoints.timeout(find("timeout", { doc, data }, 20), 20)
		local strategy = kazoo.string(find("strategy", { doc, data }, "simultaneous"), "simultaneous")
		local ringback = kazoo.string(find("ringback", { doc, data }, nil))
		call:answer()
		if #list == 0 then
			call:log("info", "group: nothing to ring; continuing")
			return nil
		end
		local outcome = endpoints.bridge(call, list, {
			timeout_s = timeout,
			strategy = strategy,
			ringback = ringback,
		})
		return endpoints.finish(call, outcome)
	end,
}
