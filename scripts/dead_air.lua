-- dead_air: answer, mute the audio sent to the caller and wait for the
-- hang-up (Kazoo's cf_dead_air; useful to record an inbound leg).
--
-- Data: none.
--
-- Exit: stops once the caller hangs up (children are never used).
--
-- Deviation: the API has no audio level control; Kazoo's
-- `audio_level(write, start, -4)` is shown as an `audio_level` event
-- (mode "write", action "start", level "-4").
return {
	description = "Answer, mute and wait for the hang-up.",
	schema = { type = "object", properties = {} },
	handle = function(call, _data)
		call:answer()
		call:emit({ event = "audio_level", mode = "write", action = "start", level = "-4" })
		call:wait_for_hangup()
		return call:stop()
	end,
}
