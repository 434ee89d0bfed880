-- prepend_cid: prefix the caller id (Kazoo's cf_prepend_cid).
-- `action`: "prepend" (default) or "reset" (erase both prefixes).
-- `caller_id_name_prefix`, `caller_id_number_prefix` (default "").
-- `apply_to`: "current" (default: the new prefix goes before the prefix
-- already set, so prefixes accumulate) or "original" (replace it).
local kazoo = require("kazoo")

return {
	description = "Prefix the caller id name and number.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "reset", "prepend" }, default = "prepend" },
			apply_to = { type = "string", enum = { "original", "current" }, default = "current" },
			caller_id_name_prefix = { type = "string", default = "" },
			caller_id_number_prefix = { type = "string", default = "" },
		},
	},
	handle = function(call, data)
		if data.action == "reset" then
			call:set_caller_id({ prefix_name = "", prefix_number = "" })
			return nil
		end
		local name = kazoo.string(data.caller_id_name_prefix, "")
		local number = kazoo.string(data.caller_id_number_prefix, "")
		if (data.apply_to or "current") == "current" then
			local current = call:caller_id()
			name = name .. current.prefix_name
			number = number .. current.prefix_number
		end
		call:set_caller_id({ prefix_name = name, prefix_number = number })
	end,
}
