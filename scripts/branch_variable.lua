-- branch_variable: branch on the value of a variable (Kazoo's
-- cf_branch_variable).
--
-- Data fields (CODE defaults):
-- * `variable` (required): a name, or a list of names (a JSON path into an
--   object). Names are normalized like Kazoo's kz_json:normalize_key:
--   lower case, "-" becomes "_" ("Customer-Tier" -> "customer_tier").
--   Kazoo quirk, reproduced: a list is used REVERSED (lists:reverse in
--   normalize_variable), so ["tier", "limits"] reads limits.tier; empty
--   names are dropped.
-- * `scope` ("custom_channel_vars"): where the value is read:
--   - custom_channel_vars: the call variables (Kazoo's custom channel
--     variables, whose keys it normalizes): the variable under its
--     normalized name, else under the name as written; inside a table
--     value, keys are compared normalized (of keys that normalize alike,
--     the last in the document wins, as kz_json:normalize). Gap: call
--     variables cannot be listed, so a variable is found only when it is
--     stored under the normalized name or under the name exactly as the
--     node writes it (Kazoo normalizes every stored name too: "TIER-LEVEL"
--     would find a variable stored as "Tier-Level"; here it does not);
--   - account: the account document (call:account());
--   - device: the calling device's document (call.calling_device);
--   - user: the user of the calling device: its first hot-desked user
--     (`hotdesk.users`, first in the document) if any, else its `owner_id`;
--   - merged: the calling endpoint (the device merged with its owner and
--     the account, as Kazoo's kz_endpoint:get; see below); when its value
--     is not a child key, the call variable's value is tried;
--   - any other scope: no value.
--   Documents are read with their keys as stored (not normalized). Without
--   a calling device (e.g. an off-net caller), user, device and merged
--   find nothing.
--
-- The value becomes a string: strings as they are, true as "true", whole
-- numbers without ".0" ("5"), other numbers as Lua prints them, a list of
-- strings concatenated (Erlang's list_to_binary); objects count as no
-- value. Kazoo reads values with kz_json:get_ne_value, whose
-- kz_term:is_empty also discards false, 0, "", "0", "false", "NULL",
-- "undefined", [] and {}: such a value never selects a child (a "false"
-- or "0" child is only reached through "_"). When the string is one of the
-- node's child keys other than "_", the call goes there (even when that
-- child is {}: the call then stops, as in Kazoo); otherwise to "_".
--
-- The merged endpoint approximates kz_endpoint:merge_attributes: for
-- call_forward (the device's when enabled there, else account < device <
-- owner), call_restriction (per class: account "deny" wins, then the
-- owner's deny/allow, else the device's), call_waiting (account < owner <
-- device), caller_id (account < device < owner, or account < owner <
-- device with the account's prefer_device_caller_id), do_not_disturb
-- (enabled if enabled anywhere), language and presence_id (owner, else
-- device, else account), mlpp.max_precedence (the lower of device and
-- owner, default 5), and the other attribute keys (account < device <
-- owner, empty values ignored); later wins. Other keys are the device's.
-- Not reproduced: the endpoint `name` built from the owner's first and last
-- names, and the owner's outbound flags.
local kazoo = require("kazoo")

local function normalize_key(key)
	return (string.gsub(string.lower(key), "-", "_"))
end

-- The path of names to look up ({normalized, as_written} pairs), or nil.
local function variable_path(variable)
	if type(variable) == "string" then
		if variable == "" then
			return nil
		end
		return { { normalize_key(variable), variable } }
	end
	if type(variable) ~= "table" then
		return nil
	end
	local path = {}
	for i = #variable, 1, -1 do
		local name = variable[i]
		if type(name) == "string" and name ~= "" then
			table.insert(path, { normalize_key(name), name })
		end
	end
	if #path == 0 then
		return nil
	end
	return path
end

-- Kazoo's kz_term:is_empty, which kz_json:get_ne_value applies: these
-- values count as absent.
local EMPTY_STRINGS = { [""] = true, ["0"] = true, ["false"] = true, ["NULL"] = true, ["undefined"] = true }

local function is_empty(value)
	local t = type(value)
	if value == nil or value == false or value == 0 then
		return true
	elseif t == "string" then
		return EMPTY_STRINGS[value] == true
	elseif t == "table" then
		return next(value) == nil
	end
	return false
end

-- The value of the key of `t` whose normalized form is `name`; of several,
-- the last in document order (Kazoo's kz_json:normalize sets each key's
-- normalized form in turn, so the later one wins).
local function get_normalized(t, name)
	local keys = json.keys(t)
	for i = #keys, 1, -1 do
		if normalize_key(keys[i]) == name then
			return t[keys[i]]
		end
	end
	return nil
end

-- Walk `path` (normalized names) from `value`; `normalized` compares keys
-- normalized (custom channel variables).
local function walk(value, path, first, normalized)
	for i = first, #path do
		if type(value) ~= "table" then
			return nil
		end
		if normalized then
			value = get_normalized(value, path[i][1])
		else
			value = value[path[i][1]]
		end
	end
	if is_empty(value) then
		return nil
	end
	return value
end

local function from_variables(call, path)
	local value = call:get(path[1][1])
	if value == nil then
		value = call:get(path[1][2])
	end
	if is_empty(value) then
		return nil
	end
	return walk(value, path, 2, true)
end

local function from_doc(doc, path)
	if type(doc) ~= "table" then
		return nil
	end
	return walk(doc, path, 1, false)
end

local function calling_device(call)
	local id = call.calling_device
	if not id then
		return nil
	end
	return call:doc("devices", id)
end

local function device_user_id(device)
	local hotdesk = device.hotdesk
	if type(hotdesk) == "table" and type(hotdesk.users) == "table" then
		-- The first logged in (kzd_devices:hotdesk_ids, document order).
		local ids = json.keys(hotdesk.users)
		if #ids > 0 then
			return ids[1]
		end
	end
	return kazoo.string(device.owner_id)
end

-- Deep copy (documents are read-only).
local copy = kazoo.copy

-- Recursive merge of objects, later ones winning; empty values ignored.
local function merge(objects)
	local out = {}
	for _, object in objects do
		if type(object) == "table" then
			for _, key in kazoo.sorted_keys(object) do
				local value = object[key]
				if not is_empty(value) then
					if type(value) == "table" and type(out[key]) == "table" and next(value) ~= nil and value[1] == nil then
						out[key] = merge({ out[key], value })
					else
						out[key] = copy(value)
					end
				end
			end
		end
	end
	return out
end

local function attr(doc, key)
	if type(doc) ~= "table" then
		return nil
	end
	local value = doc[key]
	if is_empty(value) then
		return nil
	end
	return value
end

local ATTRIBUTES = {
	"call_forward", "call_recording", "call_restriction", "call_waiting", "caller_id",
	"caller_id_options", "dial_plan", "do_not_disturb", "formatters", "language",
	"metaflows", "mobile", "music_on_hold", "outbound_flags", "presence_id",
	"record_call", "ringtones", "mlpp",
}

local function path_action(doc, class)
	local restrictions = attr(doc, "call_restriction")
	if type(restrictions) ~= "table" or type(restrictions[class]) ~= "table" then
		return nil
	end
	return restrictions[class].action
end

local function merged_restrictions(account, device, owner)
	local out = copy(attr(device, "call_restriction")) or {}
	local classes = {}
	for _, doc in { account, owner, device } do
		local restrictions = attr(doc, "call_restriction")
		if type(restrictions) == "table" then
			for class in restrictions do
				classes[class] = true
			end
		end
	end
	for _, class in kazoo.sorted_keys(classes) do
		local owner_action = path_action(owner, class)
		if path_action(account, class) == "deny" or owner_action == "deny" then
			out[class] = merge({ out[class], { action = "deny" } })
		elseif owner_action == "allow" then
			out[class] = merge({ out[class], { action = "allow" } })
		end
	end
	return out
end

-- The calling endpoint as kz_endpoint:get builds it (approximately).
local function merged_endpoint(call)
	local device = calling_device(call)
	if not device then
		return nil
	end
	local account = call:account()
	local owner_id = device_user_id(device)
	local owner = (owner_id and call:doc("users", owner_id)) or {}
	local endpoint = copy(device)
	endpoint.owner_id = owner.id
	for _, key in ATTRIBUTES do
		local a, d, o = attr(account, key), attr(device, key), attr(owner, key)
		local value
		if key == "call_forward" then
			if type(d) == "table" and kazoo.boolean(d.enabled, false) then
				value = d
			else
				value = merge({ a, d, o })
			end
		elseif key == "call_restriction" then
			value = merged_restrictions(account, device, owner)
		elseif key == "call_waiting" then
			value = merge({ a, o, d })
		elseif key == "caller_id" then
			if kazoo.boolean(account.prefer_device_caller_id, false) then
				value = merge({ a, o, d })
			else
				value = merge({ a, d, o })
			end
		elseif key == "do_not_disturb" then
			local function enabled(v)
				return type(v) == "table" and kazoo.boolean(v.enabled, false) or false
			end
			value = merge({ d, { enabled = enabled(a) or enabled(o) or enabled(d) } })
		elseif key == "mlpp" then
			local function precedence(v)
				return type(v) == "table" and kazoo.integer(v.max_precedence, 5) or 5
			end
			value = merge({ d, { max_precedence = math.min(precedence(d), precedence(o)) } })
		elseif key == "language" or key == "presence_id" then
			value = o or d or a
		else
			value = merge({ a, d, o })
		end
		endpoint[key] = value
	end
	return endpoint
end

-- The value as a child key (Kazoo's kz_term:to_binary), or nil.
local function child_name(value)
	local t = type(value)
	if t == "string" then
		return value
	elseif t == "boolean" then
		return if value then "true" else "false"
	elseif t == "number" then
		if value == math.floor(value) and math.abs(value) < 2 ^ 53 then
			return string.format("%d", value)
		end
		return tostring(value)
	elseif t == "table" and value[1] ~= nil then
		local parts = {}
		for _, part in value do
			if type(part) ~= "string" then
				return nil
			end
			table.insert(parts, part)
		end
		return table.concat(parts)
	end
	return nil
end

-- The value of the variable in the scope, or nil; `keys` is the set of
-- child keys (merged scope tries the call variables when the endpoint's
-- value is not a child).
local function find_value(call, scope, path, keys)
	if scope == "custom_channel_vars" then
		return from_variables(call, path)
	elseif scope == "account" then
		return from_doc(call:account(), path)
	elseif scope == "device" then
		return from_doc(calling_device(call), path)
	elseif scope == "user" then
		local device = calling_device(call)
		if not device then
			return nil
		end
		local user_id = device_user_id(device)
		return user_id and from_doc(call:doc("users", user_id), path)
	elseif scope == "merged" then
		local endpoint = merged_endpoint(call)
		if not endpoint then
			return nil
		end
		local value = from_doc(endpoint, path)
		if value ~= nil and keys[child_name(value) or ""] then
			return value
		end
		return from_variables(call, path)
	end
	return nil
end

return {
	description = "Branch to the child named by a variable's value (call variables, account, user, device or merged endpoint).",
	schema = {
		type = "object",
		required = { "variable" },
		properties = {
			variable = {
				type = { "string", "array" },
				items = { type = "string" },
				default = "",
				description = "variable name, or a JSON path (Kazoo reads a list reversed)",
			},
			scope = {
				type = "string",
				enum = { "account", "custom_channel_vars", "device", "merged", "user" },
				default = "custom_channel_vars",
			},
		},
	},
	handle = function(call, data)
		local path = variable_path(data.variable)
		if not path then
			call:log("warning", "branch_variable: no variable")
			return nil
		end
		local keys = {}
		for _, key in call:children() do
			if key ~= "_" then
				keys[key] = true
			end
		end
		local scope = kazoo.string(data.scope, "custom_channel_vars")
		local name = child_name(find_value(call, scope, path, keys))
		if name and keys[name] then
			return name
		end
		return nil
	end,
}
