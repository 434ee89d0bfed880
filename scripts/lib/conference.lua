-- Conference hand-offs for the conference and conference_feature modules:
-- the node schema they share and Kazoo's conference discovery request,
-- traced as a `conference.discovery` event before `call:usurp("conference")`.
-- As in Kazoo (kz_json:get_ne_value), empty values (kz_term:is_empty) are
-- left out of the request.
local kazoo = require("kazoo")

local conference = {}

local TONE = { oneOf = { { type = "boolean" }, { type = "string" } } }

-- Kazoo's kz_term:is_empty: nil for the values it counts as empty.
local function non_empty(value)
	if value == nil or value == false or value == "" or value == "0" or value == "false"
		or value == "NULL" or value == "undefined" or value == 0 then
		return nil
	end
	if type(value) == "table" and next(value) == nil then
		return nil
	end
	return value
end

-- The node schema shared by conference and conference_feature.
function conference.schema()
	return {
		type = "object",
		properties = {
			id = { type = "string", pattern = "^[A-Za-z0-9_-]{1,64}$" }, -- Kazoo: exactly 32 characters; here any document id
			config = { type = "object", description = "an ad-hoc conferences document" },
			moderator = { type = "boolean" },
			play_entry_tone = TONE,
			play_exit_tone = TONE,
			welcome_prompt = {
				type = "object",
				properties = {
					media_id = { type = "string" },
					play = { type = "boolean", default = true },
				},
			},
		},
	}
end

-- Hands the call to conference `conference_id` (nil: the conference
-- application asks for a number) with the node's other settings; returns
-- the usurp directive.
function conference.hand_off(call, data, conference_id)
	local welcome = type(data.welcome_prompt) == "table" and data.welcome_prompt or {}
	call:emit({
		event = "conference.discovery",
		conference_id = kazoo.string(conference_id),
		moderator = kazoo.boolean(data.moderator),
		play_welcome = kazoo.boolean(welcome.play, true),
		welcome_media = non_empty(welcome.media_id),
		config = type(data.config) == "table" and non_empty(data.config) or nil,
		play_entry_tone = non_empty(data.play_entry_tone),
		play_exit_tone = non_empty(data.play_exit_tone),
	})
	return call:usurp("conference")
end

return conference
