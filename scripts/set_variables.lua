-- set_variables: set call variables (Kazoo's cf_set_variables sets custom
-- application variables). `custom_application_vars`: name -> value, set in
-- the reverse of the document's order (kapps_call_util:filter_ccvs
-- prepends in a kz_json:foldl), skipping Kazoo's reserved channel variables
-- (Account-ID, Owner-ID, ...: its default `reserved_ccv_keys`) with a log
-- line. `export` is accepted (both legs share the call's variables here).

-- Kazoo's default call_command.reserved_ccv_keys.
local RESERVED = {
	["Account-ID"] = true,
	["Account-Name"] = true,
	["Account-Realm"] = true,
	["Authorizing-ID"] = true,
	["Authorizing-Type"] = true,
	["Auto-Answer"] = true,
	["Call-Forward"] = true,
	["Call-Interaction-ID"] = true,
	["Ecallmgr-Node"] = true,
	["Call-Waiting-Disabled"] = true,
	["Confirm-Cancel-Timeout"] = true,
	["Confirm-File"] = true,
	["Confirm-Key"] = true,
	["Fax-Enabled"] = true,
	["Fetch-ID"] = true,
	["Loopback-Bowout"] = true,
	["Media-Encryption-Enforce-Security"] = true,
	["Media-Webrtc"] = true,
	["Owner-ID"] = true,
	["Presence-ID"] = true,
	["RTCP-MUX"] = true,
	["Realm"] = true,
	["Require-Ignore-Early-Media"] = true,
	["Retain-CID"] = true,
	["SIP-Invite-Domain"] = true,
	["Simplify-Loopback"] = true,
	["Username"] = true,
}

return {
	description = "Set call variables.",
	schema = {
		type = "object",
		required = { "custom_application_vars" },
		properties = {
			custom_application_vars = { type = "object" },
			export = { type = "boolean" },
		},
	},
	handle = function(call, data)
		local vars = data.custom_application_vars
		if type(vars) ~= "table" then
			return nil
		end
		local names = json.keys(vars)
		for i = #names, 1, -1 do
			local name = names[i]
			if RESERVED[name] then
				call:log("info", "not setting reserved variable " .. name)
			else
				call:set(name, vars[name])
			end
		end
	end,
}
