-- callflow: branch to another callflow (Kazoo's cf_callflow). `id` names it;
-- this node's "_" child is where the call returns when that flow stops. An
-- unknown id continues to "_" (Kazoo: document not found).
local kazoo = require("kazoo")

return {
	description = "Run another callflow, then come back to this node's \"_\" child.",
	schema = {
		type = "object",
		properties = {
			id = { type = "string", minLength = 1 },
		},
	},
	handle = function(call, data)
		local id = kazoo.string(data.id)
		if not id then
			call:log("warning", "callflow: no id; continuing")
			return nil
		end
		local directive, err = call:branch(id)
		if not directive then
			call:log("warning", "callflow: " .. err)
			return nil
		end
		return directive
	end,
}
