-- eavesdrop_feature: listen to the calls of the extension in the dialled
-- code (Kazoo's cf_eavesdrop_feature, kazoo-callflows.md §3.1).
--
-- Data:
-- * `approved_device_id` / `approved_user_id` / `approved_group_id`: the
--   first given decides who may use the code; one is required (without
--   any, nobody may).
-- * `group_id`: when given, only its members (the extension's user or
--   device must be in the group's endpoints) may be listened to; absent:
--   anybody.
--
-- The capture group is looked up as a callflow; its first node's module
-- (`user` or `device`) and `data.id` name the target. Allowed: it branches
-- to an `eavesdrop` node with that target and the calling device as the
-- approved one (Kazoo's cf_exe:branch). Otherwise it answers, plays
-- "system_media/eavesdrop-no_channels" and stops.
local kazoo = require("kazoo")
local endpoints = require("endpoints")

local function target_of_extension(call, number)
	local route = number and call:lookup(number)
	if not route or route.no_match then
		return nil
	end
	local doc = call:doc("callflows", route.callflow_id)
	local flow = doc and doc.flow
	if type(flow) ~= "table" or type(flow.data) ~= "table" then
		return nil
	end
	return kazoo.string(flow.data.id), kazoo.string(flow.module)
end

local function in_group(call, group_id, target)
	local group = call:doc("groups", group_id)
	return group ~= nil and type(group.endpoints) == "table" and group.endpoints[target] ~= nil
end

return {
	description = "Listen to the calls of the extension in a feature code.",
	schema = {
		type = "object",
		properties = {
			group_id = { type = "string" },
			approved_device_id = { type = "string" },
			approved_user_id = { type = "string" },
			approved_group_id = { type = "string" },
		},
	},
	handle = function(call, data)
		local target, kind = target_of_extension(call, kazoo.string(call.capture_group))
		local group = kazoo.string(data.group_id)
		local ok = endpoints.approved(call, data, false)
			and (group == nil or (target ~= nil and in_group(call, group, target)))
		if not ok then
			call:answer()
			call:play("system_media/eavesdrop-no_channels")
			return call:stop()
		end
		local node_data = {}
		if kind == "device" or kind == "user" then
			node_data[kind .. "_id"] = target
		else
			call:log("info", "eavesdrop_feature: unknown target type " .. tostring(kind))
		end
		if call.calling_device then
			node_data.approved_device_id = call.calling_device
		end
		return call:branch({ module = "eavesdrop", data = node_data, children = {} })
	end,
}
