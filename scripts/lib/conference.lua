-- Conference hand-offs for the conference and conference_feature modules:
-- the node schema they share and Kazoo's conference discovery request,
-- traced as a `conference.discovery` event. A conference the account has
-- (a `conferences` document, or the node's ad-hoc `config`) is then run
-- here (PIN, welcome, the room: conference.join); any other is handed to
-- another system with `call:usurp("conference")`.
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
	local doc = conference_id and call:doc("conferences", conference_id)
	if not doc and non_empty(data.config) then
		doc = data.config
	end
	if not doc then
		-- Not a conference of this account: another system's to run.
		return call:usurp("conference")
	end
	local room = kazoo.string(conference_id) or kazoo.string(doc.id) or kazoo.string(doc.name) or "ad-hoc"
	return conference.join(call, data, doc, room)
end

-- The PINs of a conference document's `member` or `moderator` part.
local function pins_of(part)
	local pins = {}
	if type(part) == "table" and type(part.pins) == "table" then
		for _, pin in part.pins do
			local text = kazoo.string(tostring(pin))
			if text then
				table.insert(pins, text)
			end
		end
	end
	return pins
end

local function listed(list, value)
	return table.find(list, value) ~= nil
end

-- Kazoo's conference application asking for a PIN: up to three tries,
-- "conf-bad_pin" after a wrong one. Returns true (a moderator PIN), false
-- (a member PIN), or nil (wrong three times, or the caller left).
local function ask_pin(call, member_pins, moderator_pins)
	for _ = 1, 3 do
		local got = call:collect_digits({
			max = 10,
			prompt = "conf-enter_conf_pin",
			timeout_ms = 5000,
			terminators = "#",
		})
		if got == nil or got.reason == "hangup" then
			return nil
		end
		if listed(moderator_pins, got.digits) then
			return true
		elseif listed(member_pins, got.digits) then
			return false
		end
		call:play("conf-bad_pin")
	end
	return nil
end

-- The conference application for a conference the account has (a
-- `conferences` document) or an ad-hoc `config`: the PIN, the welcome
-- prompt, then the room (call:conference) until the caller leaves.
-- * The node's `moderator: true` joins as moderator, asking for a
--   moderator PIN when the conference has some; `moderator: false`, or a
--   caller the node does not say, is asked for a PIN when the conference
--   has any (a moderator PIN makes a moderator), else joins as a member.
-- * `welcome_prompt.play` (true): plays `welcome_prompt.media_id`, else
--   "conf-welcome".
function conference.join(call, data, doc, room)
	call:answer()
	local member_pins = pins_of(doc.member)
	local moderator_pins = pins_of(doc.moderator)
	local moderator = kazoo.boolean(data.moderator)
	if moderator == true and #moderator_pins > 0 then
		moderator = ask_pin(call, {}, moderator_pins)
	elseif moderator ~= true and (#member_pins > 0 or #moderator_pins > 0) then
		moderator = ask_pin(call, member_pins, moderator_pins)
	end
	if moderator == nil and (#member_pins > 0 or #moderator_pins > 0) then
		call:play("conf-too_many_attempts")
		return call:stop()
	end
	local welcome = type(data.welcome_prompt) == "table" and data.welcome_prompt or {}
	if kazoo.boolean(welcome.play, true) then
		call:play(kazoo.string(welcome.media_id) or "conf-welcome")
	end
	call:conference(room, { moderator = moderator == true })
	return call:stop()
end

return conference
