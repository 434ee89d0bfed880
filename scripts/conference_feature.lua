-- conference_feature: put the caller into the conference whose id the
-- dialled number captured (Kazoo's cf_conference_feature, e.g. the pattern
-- "(.{32})"): cf_conference with `id` replaced by the capture group.
--
-- Data (CODE defaults), as `conference` apart from `id`:
-- * `config`: an ad-hoc conference document.
-- * `moderator`: join as moderator (absent: the conference decides).
-- * `welcome_prompt.play` (true), `welcome_prompt.media_id`.
-- * `play_entry_tone`, `play_exit_tone`: true/false or a media id.
-- * `id` is accepted by the schema but always replaced by the capture group
--   (absent when nothing was captured: the conference application then asks
--   for a conference number).
--
-- Exits: none: emits `conference.discovery` and returns
-- `call:usurp("conference")`; the walk ends without a hang-up.
-- Empty values are dropped as in `conference` (Kazoo's get_ne_value).
--
-- Deviation: the conference itself is outside the simulator; the trace shows
-- the hand-off only.
local conference = require("conference")

return {
	description = "Hand the call to the conference named by the capture group.",
	schema = conference.schema(),
	handle = function(call, data)
		return conference.hand_off(call, data, call.capture_group)
	end,
}
