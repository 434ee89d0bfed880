-- page_group: page a list of devices, users and groups at once (Kazoo's
-- cf_page_group, kazoo-callflows.md §3.1): every device answers by itself
-- (auto-answer) and hears the caller.
--
-- Data (CODE defaults):
-- * `endpoints` (required, at least one): members {id, endpoint_type
--   "device" | "user" | "group", delay (0), timeout (20)}, resolved like a
--   ring group's but more simply: users become their devices, groups
--   (groups/<id>) all their members, in document order; an id already
--   seen is skipped (whatever its delay); disable_until and weights play
--   no part; only devices are paged, never the calling device. Disabled,
--   missing and do-not-disturb devices are left out (endpoints.lua).
-- * `timeout` (5): seconds to wait for the devices.
-- * `audio` ("one-way") | "two-way", `barge_calls` (false): shown in the
--   trace's `endpoints` event; the simulator does not model them further.
--
-- Exits: nothing to page -> "_"; the page connected -> the call ends there
-- (stop); it failed (every device busy, rejected or unregistered) -> "_"
-- (no failure children, as in Kazoo).
local kazoo = require("kazoo")
local endpoints = require("endpoints")

-- Members in order, each id once: {id, member} of devices.
local function resolve(call, members, seen, out)
	for _, member in members do
		local id = type(member) == "table" and (kazoo.string(member._id) or kazoo.string(member.id))
		local kind = type(member) == "table" and kazoo.string(member.endpoint_type, "device")
		if id and not seen[id] then
			seen[id] = true
			if kind == "group" then
				local doc = endpoints.group_doc(call, id)
				if doc then
					local group = type(doc.endpoints) == "table" and doc.endpoints or {}
					local expanded = {}
					for _, key in json.keys(group) do
						local entry = type(group[key]) == "table" and group[key] or {}
						local m = {}
						for k, v in member do
							m[k] = v
						end
						m.endpoint_type = kazoo.string(entry.type)
						m.id = key
						m._id = nil
						m.delay = entry.delay ~= nil and entry.delay or member.delay
						m.timeout = entry.timeout ~= nil and entry.timeout or member.timeout
						table.insert(expanded, m)
					end
					resolve(call, expanded, seen, out)
				else
					call:log("warning", "page_group: unable to look up the members of group " .. id)
				end
			elseif kind == "user" then
				for _, device_id in endpoints.owned_devices(call, id) do
					if not seen[device_id] then
						seen[device_id] = true
						table.insert(out, { id = device_id, member = member })
					end
				end
			elseif kind == "device" then
				table.insert(out, { id = id, member = member })
			else
				error("unknown endpoint_type " .. tostring(kind) .. " for member " .. id, 0)
			end
		end
	end
	return out
end

return {
	description = "Page a group of devices (auto-answer).",
	schema = {
		type = "object",
		required = { "audio", "endpoints" },
		properties = {
			endpoints = { type = "array", minItems = 1, items = endpoints.MEMBER_SCHEMA },
			audio = { type = "string", enum = { "one-way", "two-way" }, default = "one-way" },
			timeout = { type = "integer", default = 5 },
			barge_calls = { type = "boolean" },
		},
	},
	handle = function(call, data)
		local members = type(data.endpoints) == "table" and data.endpoints or {}
		local list = {}
		for _, entry in resolve(call, members, {}, {}) do
			if entry.id ~= call.calling_device then
				local props = endpoints.member_props(entry.member, "page_group")
				endpoints.add(call, list, entry.id, props, "page_group: not paging ")
			end
		end
		if #list == 0 then
			call:log("info", "page group has no endpoints; continuing")
			return nil
		end
		local outcome = endpoints.bridge(call, list, {
			timeout_s = endpoints.timeout(data.timeout, 5),
			page = true,
			details = {
				audio = kazoo.string(data.audio, "one-way"),
				barge_calls = kazoo.boolean(data.barge_calls, false),
			},
		})
		if outcome.status == "answered" or outcome.status == "hangup" then
			return call:stop()
		end
		return nil
	end,
}
