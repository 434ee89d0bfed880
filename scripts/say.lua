-- say: say a number, a date, a spelled name, ... (ours: Kazoo's callflow app
-- has no say module; this one takes konami's `say` data). Answers first.
-- `text` (required), `type` (default "name_spelled"), `method` (default
-- "pronounced"), `language`, `terminators`. Continues to "_".
local kazoo = require("kazoo")

local TYPES = {
	"number", "items", "persons", "messages", "currency", "time_measurement",
	"current_date", "current_time", "current_date_time", "telephone_number",
	"telephone_extension", "url", "ip_address", "e-mail_address", "postal_address",
	"account_number", "name_spelled", "name_phonetic", "short_date_time",
}

return {
	description = "Say a number, date, spelled name, ...",
	schema = {
		type = "object",
		required = { "text" },
		properties = {
			text = { type = "string", minLength = 1 },
			type = { type = "string", enum = TYPES, default = "name_spelled" },
			method = { type = "string", enum = { "none", "pronounced", "iterated", "counted" } },
			language = { type = "string" },
			terminators = kazoo.DIGITS_SCHEMA,
		},
	},
	handle = function(call, data)
		local text = kazoo.string(data.text)
		if not text then
			call:log("error", "say: no text")
			return nil
		end
		call:answer()
		call:say(text, {
			type = kazoo.string(data.type, "name_spelled"),
			method = kazoo.string(data.method, "pronounced"),
			language = kazoo.string(data.language),
			terminators = data.terminators,
		})
	end,
}
