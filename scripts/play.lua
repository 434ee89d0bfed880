-- play: play a media file, URL or tone (Kazoo's cf_play).
--
-- * `id`: what to play; when missing, the node is skipped (continue to "_").
-- * `answer`: answers first unless false (then waits Kazoo's 100 ms
--   post-answer delay).
-- * `terminators`: digits that stop playback (default: all).
-- * `endless_playback`: play until a terminator or a hang-up.
-- * `loop_count`: times to play.
-- Continues to "_"; a hang-up during playback ends the call.
local kazoo = require("kazoo")

return {
	description = "Play a media file, URL or tone.",
	schema = {
		type = "object",
		properties = {
			id = { type = "string", description = "media id, URL or tone_stream://" },
			answer = { type = "boolean" },
			endless_playback = { type = "boolean", default = false },
			loop_count = { type = "integer", minimum = 1 },
			terminators = kazoo.DIGITS_SCHEMA,
		},
	},
	handle = function(call, data)
		local media = kazoo.string(data.id)
		if not media then
			call:log("warning", "play: no media id; continuing")
			return nil
		end
		if kazoo.boolean(data.answer, true) then
			if call:answer() then
				call:sleep(100)
			end
		end
		local loop = 1
		if kazoo.boolean(data.endless_playback, false) then
			loop = 0
		elseif data.loop_count ~= nil then
			loop = kazoo.integer(data.loop_count, 1)
		end
		call:play(media, { terminators = data.terminators, loop = loop })
	end,
}
