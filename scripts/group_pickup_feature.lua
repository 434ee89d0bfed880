-- group_pickup_feature: pick up a call ringing the extension, device or
-- user given by the capture group of a feature code (Kazoo's
-- cf_group_pickup_feature, kazoo-callflows.md §3.1), e.g. "^\*7([0-9]+)$".
--
-- Data:
-- * `type` (required; Kazoo's schema default "extension"):
--   - "extension": the capture group is looked up as a callflow (as dialled,
--     not normalized; no_match does not count); its first node names the
--     target: user -> user_id, device -> device_id, ring_group / page_group
--     -> its first member (<endpoint_type>_id).
--   - "device": the device whose sip.username is the capture group (with
--     sip.method "password", the default).
--   - "user", "group": not implemented in Kazoo ("work in progress").
-- * `approved_*`, `device_id`, `user_id`, `group_id`: accepted by the
--   schema, ignored by Kazoo's code (the target comes from the capture
--   group only).
--
-- Then it behaves as group_pickup with that target (see group_pickup.lua:
-- the simulator never has a ringing call, so it plays
-- "system_media/pickup-no_channels" and stops).
--
-- Exits: no target (no such extension or device, an unsupported module or
-- type) -> plays "park-no_caller" and stops; otherwise stop, as
-- group_pickup. A ring_group / page_group callflow without members makes
-- Kazoo crash: an error, then "_".
local kazoo = require("kazoo")
local endpoints = require("endpoints")

local function by_sip_username(call, username)
	for _, doc in call:docs("devices") do
		local sip = type(doc.sip) == "table" and doc.sip or {}
		if not doc.pvt_deleted and sip.username == username and kazoo.string(sip.method, "password") == "password" then
			return doc.id
		end
	end
	return nil
end

local function params_from_flow(flow)
	local module = type(flow) == "table" and kazoo.string(flow.module)
	local data = type(flow) == "table" and type(flow.data) == "table" and flow.data or {}
	if module == "user" then
		return { user_id = data.id }
	elseif module == "device" then
		return { device_id = data.id }
	elseif module == "ring_group" or module == "page_group" then
		local first = type(data.endpoints) == "table" and data.endpoints[1]
		if type(first) ~= "table" then
			error("group_pickup_feature: the " .. module .. " has no members", 0)
		end
		local kind = kazoo.string(first.endpoint_type, "") :: string
		return { [kind .. "_id"] = kazoo.string(first._id) or first.id }
	elseif not module then
		return nil, "module not defined in callflow"
	end
	return nil, "module " .. module .. " not implemented"
end

local function build_params(call, number, kind)
	if kind == "device" then
		local id = number and by_sip_username(call, number)
		if not id then
			return nil, "no device with SIP user name \"" .. (number or "") .. "\""
		end
		return { device_id = id }
	elseif kind == "user" or kind == "group" then
		return nil, "work in progress"
	elseif kind == "extension" then
		if not number then
			return nil, "no extension"
		end
		local route, reason = call:lookup(number)
		if not route then
			return nil, reason
		end
		if route.no_match then
			return nil, "no callflow with extension " .. number
		end
		local doc = call:doc("callflows", route.callflow_id)
		return params_from_flow(doc and doc.flow)
	elseif kind == nil then
		return nil, "parameter 'type' not defined"
	end
	return nil, kind .. " not implemented"
end

return {
	description = "Pick up a call ringing the extension, device or user of a feature code.",
	schema = {
		type = "object",
		required = { "type" },
		properties = endpoints.pickup_properties({
			type = { type = "string", enum = { "group", "user", "device", "extension" }, default = "extension" },
		}),
	},
	handle = function(call, data)
		local number = kazoo.string(call.capture_group)
		local params, err = build_params(call, number, kazoo.string(data.type))
		if not params then
			call:log("info", "group_pickup_feature: " .. tostring(err))
			call:play("park-no_caller")
			return call:stop()
		end
		return endpoints.pickup(call, params)
	end,
}
