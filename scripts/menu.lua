-- menu: an IVR menu (Kazoo's cf_menu, kazoo-callflows.md §3.2).
--
-- The node's `id` names a menu document (flows/<account>/menus/<id>.json)
-- with `retries` (3), `timeout` (10000 ms for the first digit, counted from
-- the end of the greeting), `max_extension_length` (4), `hunt` (false),
-- `hunt_allow` / `hunt_deny` (regexes), `interdigit_timeout` (the document's,
-- else the node's, else 2000 ms) and `media`: `greeting` (default prompt
-- "menu-no_prompt"), `invalid_media`, `exit_media`, `transfer_media` (true:
-- the system prompt, false: silence, a string: that media). A menu document
-- that cannot be found means all defaults.
--
-- Each round plays the greeting (a first digit stops it and counts) and
-- collects up to max_extension_length digits ("#" ends early). Digits that
-- name a child go there; with hunting, digits that route to a callflow (not
-- no_match) branch to it. An invalid entry plays the invalid prompt and uses
-- up a retry; a timeout (or "#" alone) tries the "timeout" child, else uses
-- up a retry silently. With no retries left: the "max_retries" child if
-- there is one, else "_" (saying goodbye when there is no "_").
--
-- `record_pin` (with `allow_record_from_offnet`, default false: on-net
-- callers only): entering the pin, when it is not a child or a hunt match,
-- re-records the greeting: vm-record_greeting, a beep, the recording (at
-- least 1500 ms, else vm-recording_to_short and again), then the review
-- menu vm-review_recording (1 save, 2 listen, 3 record again; other digits
-- and silence ask again). Saving writes a media document (the greeting's
-- current media id, else "<menu id>-greeting") pointing at the recording and
-- the menu document's media.greeting, through the store; vm-saved, then
-- menu-return and the menu starts over with the new greeting, retries
-- untouched. A hang-up while recording or reviewing ends the module.
local kazoo = require("kazoo")

local SYSTEM_PROMPTS = {
	exit_media = "menu-exit",
	transfer_media = "menu-transferring_call",
	invalid_media = "menu-invalid_entry",
}

-- The media to play for one of the `media` settings, or nil for silence.
local function prompt(media, key)
	local value = media[key]
	if value == false then
		return nil
	elseif type(value) == "string" and value ~= "" then
		return value
	end
	return SYSTEM_PROMPTS[key]
end

local function play(call, media)
	if media then
		call:play(media, { terminators = {} })
	end
end

-- Whether `pattern` (a Kazoo regex) matches; an invalid one does not.
local function matches(pattern, text)
	if pattern == "" then
		return nil
	end
	local ok, result = pcall(re.test, pattern, text)
	return ok and result
end

local function profile(call, data)
	local doc = call:doc("menus", kazoo.string(data.id, "")) or {}
	local media = type(doc.media) == "table" and doc.media or {}
	return {
		retries = kazoo.integer(doc.retries, 3),
		timeout = kazoo.integer(doc.timeout, 10000),
		max_length = kazoo.integer(doc.max_extension_length, 4),
		hunt = kazoo.boolean(doc.hunt, false),
		hunt_allow = kazoo.string(doc.hunt_allow, ""),
		hunt_deny = kazoo.string(doc.hunt_deny, ""),
		record_pin = kazoo.string(doc.record_pin, ""),
		record_offnet = kazoo.boolean(doc.allow_record_from_offnet, false),
		id = kazoo.string(data.id, ""),
		name = kazoo.string(doc.name, kazoo.string(data.id, "")),
		greeting_id = kazoo.string(media.greeting),
		interdigit = kazoo.integer(doc.interdigit_timeout, kazoo.integer(data.interdigit_timeout, 2000)),
		greeting = kazoo.string(media.greeting, "menu-no_prompt"),
		media = media,
	}
end

-- Kazoo's minimum greeting length (`min_greeting_length`).
local MIN_GREETING_MS = 1500
local BEEP = "tone_stream://%(500,100,440)"

-- The review menu after recording: "save", "record", or nil on hang-up.
local function review(call, menu, recording)
	while true do
		call:flush_dtmf()
		local choice = call:collect_digits({
			prompt = "vm-review_recording",
			max = 1,
			timeout_ms = menu.timeout,
			interdigit_ms = menu.interdigit,
		})
		if choice.reason == "hangup" then
			return nil
		elseif choice.digits == "1" then
			return "save"
		elseif choice.digits == "2" then
			call:play(recording, { terminators = {} })
		elseif choice.digits == "3" then
			return "record"
		end
	end
end

-- Re-records the menu greeting (Kazoo's record_greeting); returns the new
-- greeting media id, or nil when the caller hung up.
local function record_greeting(call, menu)
	local media_id = menu.greeting_id or string.sub(menu.id, 1, 55) .. "-greeting"
	while true do
		call:play("vm-record_greeting", { terminators = {} })
		call:play(BEEP, { terminators = {} })
		local recording = call:record({ name = media_id })
		if recording.reason == "hangup" then
			return nil
		end
		local choice = review(call, menu, recording.recording_id)
		if not choice then
			return nil
		elseif choice == "save" and recording.duration_ms < MIN_GREETING_MS then
			call:play("vm-recording_to_short", { terminators = {} })
		elseif choice == "save" then
			local media = kazoo.copy(call:doc("media", media_id) or {})
			media.id = nil
			media.name = media.name or (menu.name .. " menu greeting")
			media.description = "recorded by " .. call:caller_id().name
			media.media_source = "recording"
			media.source_type = "menu"
			media.source_id = menu.id
			media.content_type = "audio/mpeg"
			media.recording_id = recording.recording_id
			call:save_doc("media", media_id, media)
			-- Atomic (call:update_doc): another change made meanwhile is kept.
			call:update_doc("menus", menu.id, function(stored)
				local doc = stored or {}
				doc.id = nil
				doc.media = if type(doc.media) == "table" then doc.media else {}
				doc.media.greeting = media_id
				return doc
			end)
			call:play("vm-saved", { terminators = {} })
			return media_id
		end
	end
end

-- A child for `digits`, or a branch when hunting finds a callflow for them.
local function try_match(call, menu, digits)
	if call:has_child(digits) then
		return digits
	end
	if not menu.hunt then
		return nil
	end
	if menu.hunt_allow ~= "" and not matches(menu.hunt_allow, digits) then
		return nil
	end
	if matches(menu.hunt_deny, digits) then
		return nil
	end
	local route = call:lookup(digits)
	if not route or route.no_match then
		return nil
	end
	call:flush_dtmf()
	play(call, prompt(menu.media, "transfer_media"))
	return call:branch(route)
end

return {
	description = "An IVR menu: greeting, digits to children, hunting, retries.",
	schema = {
		type = "object",
		properties = {
			id = { type = "string", description = "menu document id" },
			interdigit_timeout = { type = "integer", minimum = 1 },
		},
	},
	handle = function(call, data)
		local menu = profile(call, data)
		call:answer()
		local retries = menu.retries
		while retries > 0 do
			local entry = call:collect_digits({
				prompt = menu.greeting,
				max = menu.max_length,
				timeout_ms = menu.timeout,
				interdigit_ms = menu.interdigit,
				terminators = "#",
			})
			if entry.reason == "hangup" then
				return call:stop()
			end
			local digits = entry.digits
			if digits == "" then
				local found = try_match(call, menu, "timeout")
				if found then
					return found
				end
				retries -= 1
			else
				local found = try_match(call, menu, digits)
				if found then
					return found
				end
				local may_record = menu.record_offnet or call.inception == "onnet"
				if menu.record_pin ~= "" and digits == menu.record_pin and may_record and menu.id ~= "" then
					local greeting = record_greeting(call, menu)
					if not greeting then
						return call:stop()
					end
					menu.greeting = greeting
					menu.greeting_id = greeting
					call:play("menu-return", { terminators = {} })
				else
					play(call, prompt(menu.media, "invalid_media"))
					retries -= 1
				end
			end
		end
		call:flush_dtmf()
		play(call, prompt(menu.media, "exit_media"))
		if call:has_child("max_retries") then
			return "max_retries"
		end
		if call:has_child("_") then
			play(call, prompt(menu.media, "transfer_media"))
		else
			call:play("vm-goodbye", { terminators = {} })
		end
		return "_"
	end,
}
