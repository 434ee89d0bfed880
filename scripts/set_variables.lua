-- set_variables: set call variables (Kazoo's cf_set_variables sets custom
-- application variables). `custom_application_vars`: name -> value;
-- `export` is accepted (both legs share the call's variables here).
local kazoo = require("kazoo")

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
		for _, name in kazoo.sorted_keys(vars) do
			call:set(name, vars[name])
		end
	end,
}
