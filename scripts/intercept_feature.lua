-- intercept_feature: intercept the calls of the extension or device in the
-- dialled code (Kazoo's cf_intercept_feature, kazoo-callflows.md §3.1):
-- `*7<ext>`-style codes.
--
-- Data:
-- * `type` (required): "extension" (the capture group is looked up as a
--   callflow; its first node must be a `user` or `device` node, whose id is
--   the target), "device" (the capture group is a device's SIP user name),
--   or "user" (Kazoo: "work in progress", an error).
-- * `approved_device_id` / `approved_user_id` / `approved_group_id`: when
--   any is given, they decide who may intercept (as in `intercept`).
--   Without them, the calling device may intercept a user's calls when it
--   belongs to that user, and a device's calls when both devices have the
--   same owner; otherwise it answers and plays "intercept-no_channels".
--
-- A target that cannot be found (no such extension, device or module) plays
-- "park-no_caller" and stops. Then as `intercept`. Exits: stop.
local kazoo = require("kazoo")
local endpoints = require("endpoints")

local function by_sip_username(call, username)
	for _, doc in call:docs("devices") do
		local sip = type(doc.sip) == "table" and doc.sip or {}
		if not doc.pvt_deleted and sip.username == username then
			return doc.id
		end
	end
	return nil
end

-- Kazoo's cf_eavesdrop_feature:get_target_for_extension: the user or
-- device of the extension's callflow.
local function target_of_extension(call, number)
	local route = call:lookup(number)
	if not route or route.no_match then
		return nil, "Can't find target for extension " .. number
	end
	local doc = call:doc("callflows", route.callflow_id)
	local flow = doc and doc.flow
	local module = type(flow) == "table" and kazoo.string(flow.module)
	local id = type(flow) == "table" and type(flow.data) == "table" and kazoo.string(flow.data.id)
	if (module == "user" or module == "device") and id then
		return { [module .. "_id"] = id }
	end
	return nil, "module " .. tostring(module) .. " not implemented"
end

local function build_params(call, number, kind)
	if kind == "device" then
		local id = number and by_sip_username(call, number)
		if not id then
			return nil, "no device with SIP user name \"" .. tostring(number) .. "\""
		end
		return { device_id = id }
	elseif kind == "user" then
		return nil, "work in progress"
	elseif kind == "extension" then
		if not number then
			return nil, "no extension"
		end
		return target_of_extension(call, number)
	elseif kind == nil then
		return nil, "parameter 'type' not defined"
	end
	return nil, kind .. " not implemented"
end

-- Without approved_* restrictions: the caller's device must belong to the
-- target user, or share its owner with the target device.
local function allowed(call, params)
	local device = call.calling_device and call:doc("devices", call.calling_device)
	if not device then
		return false
	end
	if params.user_id then
		return params.user_id == device.owner_id
	end
	local target = params.device_id and call:doc("devices", params.device_id)
	return target ~= nil and device.owner_id ~= nil and target.owner_id == device.owner_id
end

return {
	description = "Intercept the calls of the extension or device in a feature code.",
	schema = {
		type = "object",
		required = { "type" },
		properties = endpoints.pickup_properties({
			type = { type = "string", enum = { "user", "device", "extension" } },
		}),
	},
	handle = function(call, data)
		local number = kazoo.string(call.capture_group)
		local params, err = build_params(call, number, kazoo.string(data.type))
		if not params then
			call:log("info", "intercept_feature: " .. tostring(err))
			call:play("park-no_caller")
			return call:stop()
		end
		local restricted = false
		for _, key in { "approved_device_id", "approved_user_id", "approved_group_id" } do
			local value = kazoo.string(data[key])
			if value then
				params[key] = value
				restricted = true
			end
		end
		if not restricted and not allowed(call, params) then
			call:answer()
			call:play("intercept-no_channels")
			return call:stop()
		end
		return endpoints.pickup(call, params, { intercept = true })
	end,
}
