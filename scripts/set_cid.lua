-- set_cid: rewrite the caller id later bridges present (Kazoo's cf_set_cid).
-- `caller_id_name`, `caller_id_number` (default ""): a non-empty value
-- replaces, an empty one erases an earlier rewrite.
local kazoo = require("kazoo")

return {
	description = "Rewrite the caller id presented to callees.",
	schema = {
		type = "object",
		properties = {
			caller_id_name = { type = "string", default = "" },
			caller_id_number = { type = "string", default = "" },
		},
	},
	handle = function(call, data)
		call:set_caller_id({
			name = kazoo.string(data.caller_id_name, ""),
			number = kazoo.string(data.caller_id_number, ""),
		})
	end,
}
