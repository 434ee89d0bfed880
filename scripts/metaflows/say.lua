-- metaflows/say: say a number, date, spelled name, ... to the caller's leg
-- (Kazoo's konami_say).
--
-- Data: `text` (without it nothing is said), `type` ("name_spelled"),
-- `method` ("pronounced"), `language`, `gender` (accepted, not applied).
-- Exit: continue to "_".
local kazoo = require("kazoo")

return {
	description = "Say a number, date, spelled name, ... to the caller.",
	schema = {
		type = "object",
		properties = {
			gender = { type = "string" },
			language = { type = "string" },
			method = { type = "string" },
			text = { type = "string" },
			type = { type = "string" },
		},
	},
	handle = function(call, data)
		local text = kazoo.string(data.text)
		if not text then
			call:log("info", "say: no text")
			return nil
		end
		call:say(text, {
			type = kazoo.string(data.type, "name_spelled"),
			method = kazoo.string(data.method, "pronounced"),
			language = kazoo.string(data.language),
		})
		return nil
	end,
}
