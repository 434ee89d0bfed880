-- metaflows/tts: speak text (Kazoo's konami_tts).
--
-- Data: `text` (without it nothing is said), `voice` ("female"),
-- `language`, `terminators` (all digits), `engine` (accepted, not applied),
-- `leg` (the schema's; Kazoo's code speaks to the caller's leg: that is the
-- default here; "self", "peer", "both" as in `play`). Exit: continue to "_".
local kazoo = require("kazoo")
local metaflows = require("metaflows")

return {
	description = "Speak text to the call.",
	schema = {
		type = "object",
		properties = {
			engine = { type = "string" },
			language = { type = "string" },
			leg = { type = "string", enum = { "self", "peer", "both" } },
			terminators = kazoo.DIGITS_SCHEMA,
			text = { type = "string" },
			voice = { type = "string", default = "female" },
		},
	},
	handle = function(call, data)
		local text = kazoo.string(data.text)
		if not text then
			call:log("info", "tts: no text")
			return nil
		end
		local leg = "a"
		if kazoo.string(data.leg) then
			leg = metaflows.legs(call, data.leg, metaflows.pressed(call, data)) :: string
			if not leg then
				call:log("info", "tts: no peer to speak to")
				return nil
			end
		end
		call:tts(text, {
			voice = kazoo.string(data.voice, "female"),
			language = kazoo.string(data.language),
			terminators = data.terminators,
			leg = leg,
		})
		return nil
	end,
}
