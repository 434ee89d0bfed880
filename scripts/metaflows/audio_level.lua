-- metaflows/audio_level: change the volume of the call's audio (Kazoo's
-- konami_audio_level: FreeSWITCH's audio level, -4 mutes, 0 restores).
--
-- Data: `action` ("start", "stop"), `mode` ("read": what the call hears
-- from the caller, "write": what the caller hears), `level` (-4 to 4).
-- The simulator carries no audio: an `audio_level` event records it.
-- Exit: continue to "_".
local kazoo = require("kazoo")
local metaflows = require("metaflows")

return {
	description = "Change the volume of the call's audio.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "start", "stop" } },
			level = { type = { "integer", "string" } },
			mode = { type = "string", enum = { "read", "write" } },
		},
	},
	handle = function(call, data)
		call:emit({
			event = "audio_level",
			action = kazoo.string(data.action, "start"),
			mode = kazoo.string(data.mode, "write"),
			level = tostring(kazoo.integer(data.level, 0)),
			leg = metaflows.pressed(call, data),
		})
		return nil
	end,
}
