-- tts: speak text (Kazoo's cf_tts). Answers first.
-- `text` (required), `voice` (default "female"), `language`, `engine`,
-- `terminators` (default: all digits). Continues to "_"; without text the
-- flow stops (Kazoo: error -> stop).
local kazoo = require("kazoo")

return {
	description = "Speak text.",
	schema = {
		type = "object",
		required = { "text" },
		properties = {
			text = { type = "string", minLength = 1, maxLength = 1000 },
			voice = { type = "string", default = "female" },
			language = { type = "string" },
			engine = { type = "string", enum = { "flite", "google", "ispeech", "voicefabric" } },
			terminators = kazoo.DIGITS_SCHEMA,
			endless_playback = { type = "boolean" },
		},
	},
	handle = function(call, data)
		local text = kazoo.string(data.text)
		if not text then
			call:log("error", "tts: no text")
			return call:stop()
		end
		call:answer()
		call:tts(text, {
			voice = kazoo.string(data.voice, "female"),
			language = kazoo.string(data.language),
			terminators = data.terminators,
		})
	end,
}
