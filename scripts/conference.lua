-- conference: hand the call to the conference application (Kazoo's
-- cf_conference).
--
-- Data (CODE defaults):
-- * `id`: the conference document id (32 characters); absent: the conference
--   application asks the caller for a conference number.
-- * `config`: an ad-hoc conference document used instead of `id`.
-- * `moderator`: join as moderator (absent: the conference decides).
-- * `welcome_prompt.play` (true): play the welcome prompt;
--   `welcome_prompt.media_id`: the prompt to play instead of the default.
-- * `play_entry_tone`, `play_exit_tone`: true/false or a media id.
--
-- Exits: none. Like Kazoo's conference discovery request, the module emits a
-- `conference.discovery` event describing the hand-off (the fields Kazoo
-- puts in the request) and returns `call:usurp("conference")`: the walk
-- ends without a hang-up and children are never used.
--
-- As in Kazoo (kz_json:get_ne_value), empty values are left out of the
-- request: "", "0", "false", false and {} for `welcome_prompt.media_id`,
-- `config`, `play_entry_tone` and `play_exit_tone`; so `play_entry_tone:
-- false` leaves the conference's own setting in force.
--
-- Deviation: the conference itself (joining, tones, moderation) is another
-- application, outside the simulator; the trace shows the hand-off only.
local conference = require("conference")

return {
	description = "Hand the call to a conference.",
	schema = conference.schema(),
	handle = function(call, data)
		return conference.hand_off(call, data, data.id)
	end,
}
