-- voicemail: leave a message in a voicemail box, or check one (Kazoo's
-- cf_voicemail, kazoo-callflows.md §3.1).
--
-- Data: `action` "compose" (default) | "check" (any other action continues
-- to "_" at once, without answering); `id` (a vmboxes document; without it,
-- the box whose `mailbox` is the route's capture group, else the caller's
-- own box, see below); `max_message_length` (seconds, default the box's,
-- else 500); `interdigit_timeout` (ms, the box's first, default 2000);
-- `single_mailbox_login`, `callerid_match_login` (false).
--
-- The box (lib/vmbox.lua): a vmboxes document; its messages are kept in its
-- `messages` array with Kazoo's message metadata {media_id, call_id,
-- caller_id_number, caller_id_name, from, to, length (ms), timestamp
-- (Gregorian seconds), folder = "new" | "saved" | "deleted"}, changed with
-- call:update_doc (atomic: two callers leaving a message at once both
-- keep it). Settings Kazoo takes from its configuration (max message
-- count 100, minimum message length 500 ms, login attempts 3, PIN length 6,
-- box number length 15, operator key "0", the `keys`) come from account.json
-- `configs` (see lib/vmbox.lua).
--
-- compose: answers. A caller who owns the box (the calling device's owner)
-- gets `check` instead when check_if_owner holds (the box's flag; Kazoo's
-- default: true when no module ran before this node or the previous one was
-- `device`). A missing box plays "vm-not_available_no_voicemail" and
-- continues. A box holding max_message_count (new + saved) messages plays
-- its greeting and "vm-mailbox_full" and continues ("*" during them logs in
-- to the box). Otherwise: the greeting ("vm-greeting_intro" when
-- play_greeting_intro; then, unless skip_greeting, media.temporary_unavailable,
-- else media.unavailable, else "vm-person_not_available" when
-- use_person_not_available, else "vm-person" + the box number spelled +
-- "vm-not_available") and, unless skip_instructions, "vm-record_message".
-- A digit during them: "0" (operator key) branches to the operator
-- callflow (the box's operator_number, else configs.callflow.operator_key,
-- else "0", looked up like a dialled number; not a no_match route; without
-- one, records), "*" (login key) checks the box, the `continue` key (none
-- by default) continues to "_", any other digit ("#", ...) skips to the
-- recording. Then a beep (tone_stream://%(500,100,440)) and the recording
-- (up to max_message_length, any digit ends it). A hang-up ends the
-- recording and the message is stored at once. After a digit or the time
-- limit, the review menu ("vm-review_recording"): 1 saves, 2 plays it back,
-- 3 records again, 0 branches to the operator (after storing the message);
-- four invalid entries or a hang-up save it too. Saved: "vm-saved",
-- "vm-thank_you", continue to "_". Messages shorter than the minimum are
-- not stored. save_after_notify / delete_after_notify file new messages
-- under "saved" / "deleted" (no notifications are sent here).
--
-- check: answers. Box: `id`, the capture group, else the calling device's
-- owner's boxes: the only one with single_mailbox_login, else (with
-- callerid_match_login) the one whose `mailbox` is the caller's number;
-- else the caller is asked for the box number ("vm-enter_id", up to 15
-- digits; "menu-invalid_entry" on a wrong one). The owner of the box skips
-- the PIN unless require_pin (that is Kazoo's rule, whichever way the box
-- was found; callerid_match_login only picks the box); an owner whose box
-- is not set up goes straight to the set-up. A box without a PIN refuses
-- others ("vm-no_access"). PIN: "vm-enter_pass", up to 6 digits;
-- "vm-fail_auth" on a wrong one; after 3 failed attempts (box number or
-- PIN) "vm-abort" and continue to "_". A box that is not set up
-- (is_setup false) first runs Kazoo's set-up: "vm-setup_intro", new PIN
-- (entered twice, 4-15 digits, 3 tries, else "vm-goodbye" and the call
-- stops), the unavailable greeting, then "vm-setup_complete".
-- Main menu: the counts ("vm-no_messages", or "vm-you_have" + say N
-- (type "messages") + "vm-new_message(s)" / "vm-new_and" + say M +
-- "vm-saved_message(s)") and "vm-main_menu"; keys 1 new messages, 2 saved
-- messages, 5 settings (unless not_configurable: "vm-main_menu_not_configurable"),
-- "#" exit. Kazoo collects the choice with "#" as the terminator, so "#"
-- reads as an empty entry (like a time-out); after four empty or invalid
-- entries "vm-goodbye" plays and the call continues to "_" (we keep that).
-- Each message, newest first (oldest first with oldest_message_first):
-- "vm-message_number" + say n + the message + (unless skip_envelope)
-- "vm-received" + say the time (current_date_time, in the box's time zone)
-- + "vm-message_menu"; keys 1 save (-> folder "saved", "vm-saved", next),
-- 2 replay, 3 forward (to another box's number, "vm-enter_forward_id"; the
-- copy is filed "new" there; the original is saved), 4 previous, 6 next,
-- 7 delete (-> folder "deleted", "vm-deleted", next), 0 save and back to
-- the main menu; anything else "menu-invalid_entry" and "vm-message_menu"
-- again. After the last message, back to the main menu.
-- Settings ("vm-settings_menu"): 1 record the unavailable greeting, 2 the
-- name, 3 change the PIN, 4 record the temporary greeting, 5 delete it,
-- 0 main menu. Recorded greetings and names become media documents.
-- Exits: "_" when done; a hang-up ends the call; the operator key branches
-- (this node's "_" is where the call returns).
--
-- Deviations and gaps:
-- * Kazoo's check_if_owner default depends on the module run before this
--   one (cf_last_action); the API does not expose it, so it is inferred
--   from this node's parent in the callflow document (a first node counts
--   as "nothing before" unless the call was routed to another callflow).
-- * max_message_count and operator_number are read from the box first (as
--   the brief and the reference ask; the Kazoo source read only has the
--   account/system settings).
-- * No MWI, e-mail notifications, transcription, silence detection, or
--   "prepend_forward" forwarding.
-- * Saving a document rewrites it whole; empty JSON arrays in a box
--   document come back as {} (the API cannot build an empty array).
local kazoo = require("kazoo")
local vmbox = require("vmbox")

-- Kazoo's record beep: 440 Hz, 500 ms on, 100 ms off.
local BEEP = "tone_stream://%(500,100,440)"
-- kapps_call_command:default_collect_timeout().
local COLLECT_TIMEOUT = 5000
-- Greetings and names: b_record's default time limit.
local GREETING_LIMIT_S = 300
-- Pins must satisfy the vmboxes schema.
local PIN_MIN, PIN_MAX = 4, 15
local HANGUP = "\0hangup"

-- Plays prompts (`play`) and says (`say`, `type`) in order. Any digit stops
-- them (it stays buffered) and is returned; HANGUP on a hang-up.
local function macro(call, items)
	for _, item in items do
		local outcome
		if item.say then
			outcome = call:say(item.say, { type = item.type })
		else
			outcome = call:play(item.play)
		end
		if outcome.reason == "terminator" then
			return outcome.digit
		elseif outcome.reason == "hangup" then
			return HANGUP
		end
	end
	return nil
end

-- A blocking prompt (Kazoo's b_prompt): a digit stops it and is dropped.
local function bprompt(call, media)
	call:play(media)
	call:flush_dtmf()
end

-- Kazoo's collect_digits after prompts: "#" terminates; the time-out starts
-- when the prompts end. The digits ("" for none), or nil on a hang-up.
local function collect(call, box, max, items)
	local outcome
	if #items == 1 and items[1].play then
		outcome = call:collect_digits({
			max = max,
			timeout_ms = COLLECT_TIMEOUT,
			interdigit_ms = box.interdigit,
			prompt = items[1].play,
		})
	else
		if macro(call, items) == HANGUP then
			return nil
		end
		outcome = call:collect_digits({ max = max, timeout_ms = COLLECT_TIMEOUT, interdigit_ms = box.interdigit })
	end
	if outcome.reason == "hangup" then
		return nil
	end
	return outcome.digits
end

local function max_pin_length(call)
	return vmbox.config_integer(call, { "voicemail", "max_pin_length" }, 6)
end

local function is_owner(call, box)
	return box.owner_id ~= nil and box.owner_id == vmbox.call_owner(call)
end

-- Kazoo's check_if_owner default: true when this node is the first module
-- of the call or follows a `device` node (see the header).
local function owner_check_default(call, data)
	local doc = vmbox.doc(call, "callflows", call.callflow_id)
	if not doc or type(doc.flow) ~= "table" then
		return true
	end
	local parents = {}
	local function walk(node, parent)
		if type(node) ~= "table" then
			return
		end
		if node.module == call.module and vmbox.equal(node.data or {}, data) then
			table.insert(parents, parent or false)
		end
		if type(node.children) == "table" then
			for _, key in kazoo.sorted_keys(node.children) do
				walk(node.children[key], node)
			end
		end
	end
	walk(doc.flow, nil)
	if #parents ~= 1 then
		return true
	end
	local parent = parents[1]
	if parent == false then
		local route = call:lookup(call.number)
		return route == nil or route.callflow_id == call.callflow_id
	end
	return parent.module == "device"
end

-- The operator callflow: a branch directive, or nil when there is none.
local function operator_branch(call, box)
	local number = box.operator_number
		or tostring(vmbox.config(call, "callflow", { "operator_key" }, "0"))
	local route = call:lookup(number)
	if not route then
		call:log("info", "voicemail: no operator callflow for " .. number)
		return nil
	end
	if route.no_match then
		call:log("info", "voicemail: operator number " .. number .. " only reaches no_match")
		return nil
	end
	local directive, err = call:branch(route)
	if not directive then
		call:log("warning", "voicemail: operator branch failed: " .. tostring(err))
	end
	return directive
end

---------------------------------------------------------------------------
-- Messages

local function now_gregorian(call)
	return math.floor(call:now() / 1000) + vmbox.UNIX_EPOCH_IN_GREGORIAN
end

-- Stores a new message (Kazoo's new_message): not when shorter than the
-- minimum message length.
local function new_message(call, box, recording_id, length)
	if length < box.min_message_length then
		call:log(
			"info",
			string.format(
				"voicemail: message of %d ms is shorter than %d ms; not stored",
				length,
				box.min_message_length
			)
		)
		return false
	end
	local folder = "new"
	if box.after_notify == "save" then
		folder = "saved"
	elseif box.after_notify == "delete" then
		folder = "deleted"
	end
	local message = {
		media_id = recording_id,
		call_id = call.call_id,
		caller_id_number = call.from,
		caller_id_name = call.caller_id_name,
		from = call.from,
		to = call.to,
		length = length,
		timestamp = now_gregorian(call),
		folder = folder,
	}
	vmbox.add_message(call, box.id, message)
	-- Kazoo's `message_left` flag (read by missed-call alerts, webhooks).
	call:set("message_left", true)
	call:emit({
		event = "voicemail.new_message",
		vmbox_id = box.id,
		media_id = recording_id,
		length_ms = length,
		folder = folder,
	})
	return true
end

local function set_folder(call, box, message, folder)
	vmbox.set_folder(call, box.id, message.media_id, folder)
	call:emit({ event = "voicemail.folder", vmbox_id = box.id, media_id = message.media_id, folder = folder })
end

---------------------------------------------------------------------------
-- Recording review (Kazoo's review_recording): "save", "record",
-- "no_selection", or "branch" and the directive.

local function review_recording(call, box, recording_id, allow_operator)
	local keys = box.keys
	local loop = 1
	while loop <= 4 do
		local digits = collect(call, box, 1, { { play = "vm-review_recording" } })
		if digits == nil then
			return "no_selection"
		end
		if digits == keys.listen then
			local outcome = call:play(recording_id)
			if outcome.reason == "hangup" then
				return "no_selection"
			end
			call:flush_dtmf()
			loop = 1
		elseif digits == keys.record then
			return "record"
		elseif digits == keys.save then
			return "save"
		elseif digits == keys.operator and allow_operator then
			local directive = operator_branch(call, box)
			if directive then
				return "branch", directive
			end
			loop += 1
		else
			loop += 1
		end
	end
	return "no_selection"
end

---------------------------------------------------------------------------
-- Greetings, names and the PIN (settings and set-up)

local GREETINGS = {
	unavailable = { prompt = "vm-record_greeting", what = "unavailable greeting" },
	temporary_unavailable = { prompt = "vm-record_temp_greeting", what = "temporary unavailable greeting" },
	name = { prompt = "vm-record_name", what = "users name" },
}

-- The media document a recording goes to: the existing one (a greeting
-- uploaded through the API is left alone), else a new one.
local function greeting_media_id(call, box, kind, recording_id)
	local current
	if kind == "name" then
		current = box.name_media
	else
		current = box[kind]
	end
	if current and kind == "unavailable" then
		local media = vmbox.doc(call, "media", current)
		if media and media.media_source == "upload" then
			current = nil
		end
	end
	return current or recording_id
end

-- Records a greeting or name; true when saved, false when dropped.
local function record_greeting(call, box, kind)
	local greeting = GREETINGS[kind]
	while true do
		call:play(greeting.prompt)
		call:play(BEEP, { terminators = {} })
		local recording = call:record({ time_limit_s = GREETING_LIMIT_S, terminators = kazoo.ALL_DIGITS })
		call:flush_dtmf()
		local choice = review_recording(call, box, recording.recording_id, false)
		if choice == "save" then
			local media_id = greeting_media_id(call, box, kind, recording.recording_id)
			local media = vmbox.copy(vmbox.doc(call, "media", media_id) or {})
			media.name = "mailbox " .. box.mailbox_number .. " " .. greeting.what
			media.description = "voicemail recorded/prompt media"
			media.source_type = "voicemail"
			media.source_id = box.id
			media.owner_id = box.owner_id
			media.media_source = "recording"
			media.streamable = true
			if recording.duration_ms >= box.min_message_length then
				media.recording_id = recording.recording_id
			end
			call:save_doc("media", media_id, media)
			-- media.<kind> of the box (a name: of its owner, if any).
			local function set_media(doc)
				if type(doc.media) ~= "table" then
					doc.media = {}
				end
				doc.media[kind] = media_id
			end
			if kind == "name" then
				local owner = box.owner_id and vmbox.doc(call, "users", box.owner_id)
				if owner then
					call:update_doc("users", box.owner_id, function(doc)
						if not doc then
							return nil
						end
						set_media(doc)
						return doc
					end)
				else
					vmbox.update(call, box.id, set_media)
				end
				box.name_media = media_id
			else
				vmbox.update(call, box.id, set_media)
				box[kind] = media_id
			end
			bprompt(call, "vm-saved")
			return true
		elseif choice ~= "record" then
			bprompt(call, "vm-deleted")
			return false
		end
	end
end

-- Kazoo's change_pin: "ok", "max_retry" or "hangup".
local function change_pin(call, box)
	local loop = 1
	while true do
		local pin = collect(call, box, max_pin_length(call), { { play = "vm-enter_new_pin" } })
		if pin == nil then
			return "hangup"
		end
		local confirm = collect(call, box, max_pin_length(call), { { play = "vm-enter_new_pin_confirm" } })
		if confirm == nil then
			return "hangup"
		end
		if pin == confirm and #pin >= PIN_MIN and #pin <= PIN_MAX then
			vmbox.update(call, box.id, function(doc)
				doc.pin = pin
			end)
			box.pin = pin
			bprompt(call, "vm-pin_set")
			return "ok"
		end
		if loop >= 3 then
			return "max_retry"
		end
		bprompt(call, "vm-pin_invalid")
		loop += 1
	end
end

-- Kazoo's setup_mailbox: "ok", "stop" (the call is to end) or "failed".
local function setup_mailbox(call, box)
	bprompt(call, "vm-setup_intro")
	local pin = change_pin(call, box)
	if pin == "hangup" then
		return "stop"
	elseif pin == "max_retry" then
		bprompt(call, "vm-goodbye")
		return "stop"
	end
	bprompt(call, "vm-setup_rec_greeting")
	if not record_greeting(call, box, "unavailable") then
		-- Kazoo: the set-up crashes on this (caught); the module ends.
		call:log("info", "voicemail: set-up ended without a greeting")
		return "failed"
	end
	vmbox.update(call, box.id, function(doc)
		doc.is_setup = true
	end)
	box.is_setup = true
	bprompt(call, "vm-setup_complete")
	return "ok"
end

-- Kazoo's config_menu: nil (done), "stop", or "main" (back to the main
-- menu).
local function config_menu(call, box)
	local keys = box.keys
	local loop = 1
	while true do
		if loop >= 4 then
			-- Kazoo's config_menu/3 has no clause past three attempts: the
			-- module crashes and the call continues to "_".
			call:log("warning", "voicemail: too many invalid settings entries")
			return nil
		end
		call:flush_dtmf()
		local digits = collect(call, box, 1, { { play = "vm-settings_menu" } })
		if digits == nil then
			return nil
		end
		local greeting = nil -- the greeting (or name) to record
		if digits == keys.rec_unavailable then
			greeting = "unavailable"
		elseif digits == keys.rec_name then
			greeting = "name"
		elseif digits == keys.set_pin then
			if change_pin(call, box) == "hangup" then
				return "stop"
			end
			loop = 1
		elseif digits == keys.rec_temporary_unavailable then
			greeting = "temporary_unavailable"
		elseif digits == keys.del_temporary_unavailable then
			if box.temporary_unavailable then
				vmbox.update(call, box.id, function(doc)
					if type(doc.media) == "table" then
						doc.media.temporary_unavailable = nil
					end
				end)
				box.temporary_unavailable = nil
				bprompt(call, "vm-saved")
			end
			return "main"
		elseif digits == keys.return_main then
			return "main"
		else
			loop += 1
		end
		if greeting then
			if not record_greeting(call, box, greeting) then
				return nil
			end
			loop = 1
		end
	end
end

---------------------------------------------------------------------------
-- Checking messages

local function count_prompts(new, saved)
	if new == 0 and saved == 0 then
		return { { play = "vm-no_messages" } }
	end
	local items = { { play = "vm-you_have" } }
	if new > 0 then
		table.insert(items, { say = tostring(new), type = "messages" })
		if saved == 0 then
			table.insert(items, { play = new == 1 and "vm-new_message" or "vm-new_messages" })
		else
			table.insert(items, { play = "vm-new_and" })
		end
	end
	if saved > 0 then
		table.insert(items, { say = tostring(saved), type = "messages" })
		table.insert(items, { play = saved == 1 and "vm-saved_message" or "vm-saved_messages" })
	end
	return items
end

-- The time a message was left, as Kazoo says it: Unix seconds shifted to
-- the box's time zone.
local function received_at(box, message)
	local unix = (tonumber(message.timestamp) or 0) - vmbox.UNIX_EPOCH_IN_GREGORIAN
	local ok, date = pcall(calendar.date, unix * 1000, box.timezone)
	local offset = ok and date.offset_s or 0
	return tostring(math.floor(unix + offset))
end

local function message_prompt(box, message, number)
	local items = {
		{ play = "vm-message_number" },
		{ say = tostring(number), type = "number" },
		{ play = message.media_id },
	}
	if not box.skip_envelope then
		table.insert(items, { play = "vm-received" })
		table.insert(items, { say = received_at(box, message), type = "current_date_time" })
	end
	table.insert(items, { play = "vm-message_menu" })
	return items
end

-- Kazoo's message_menu: the choice, or nil on a hang-up.
local function message_menu(call, box, items)
	local keys = box.keys
	while true do
		local digits = collect(call, box, 1, items)
		if digits == nil then
			return nil
		end
		if digits == keys.keep then
			return "keep"
		elseif digits == keys.forward then
			return "forward"
		elseif digits == keys.delete then
			return "delete"
		elseif digits == keys.return_main then
			return "return"
		elseif digits == keys.replay then
			return "replay"
		elseif digits == keys.prev then
			return "prev"
		elseif digits == keys.next then
			return "next"
		end
		bprompt(call, "menu-invalid_entry")
		items = { { play = "vm-message_menu" } }
	end
end

local find_mailbox

-- The box to forward to (Kazoo's find_destination_mailbox), or nil.
local function find_destination(call, source_id, check_default)
	local searching = vmbox.missing(call)
	searching.check_default = check_default
	local loop = 1
	while true do
		if loop > searching.max_login_attempts then
			bprompt(call, "vm-forward_abort")
			return nil
		end
		local found, next_loop = find_mailbox(call, searching, "vm-enter_forward_id", loop)
		if not found then
			loop = searching.max_login_attempts + 1
		elseif found.id == source_id then
			bprompt(call, "menu-invalid_entry")
			loop = next_loop + 1
		else
			return found
		end
	end
end

local function forward_message(call, box, message)
	call:flush_dtmf()
	local destination = find_destination(call, box.id, box.check_default)
	if not destination then
		return
	end
	local copy = vmbox.copy(message)
	copy.folder = "new"
	vmbox.add_message(call, destination.id, copy)
	call:emit({
		event = "voicemail.forward",
		vmbox_id = box.id,
		to_vmbox_id = destination.id,
		media_id = message.media_id,
	})
end

local function rest(list)
	local out = {}
	for i = 2, #list do
		table.insert(out, list[i])
	end
	return out
end

local function push(item, list)
	local out = { item }
	for _, v in list do
		table.insert(out, v)
	end
	return out
end

-- Kazoo's play_messages: "complete" (back to the main menu) or nil (the
-- caller hung up).
local function play_messages(call, box, messages, count)
	local current, previous = messages, {}
	-- On to the next message, the current one becoming the previous.
	local function advance()
		previous = push(current[1], previous)
		current = rest(current)
	end
	while #current > 0 do
		local message = current[1]
		local choice = message_menu(call, box, message_prompt(box, message, count - #current + 1))
		if choice == nil then
			return nil
		elseif choice == "keep" then
			bprompt(call, "vm-saved")
			set_folder(call, box, message, "saved")
			advance()
		elseif choice == "prev" then
			if #previous > 0 then
				current = push(previous[1], current)
				previous = rest(previous)
			end
		elseif choice == "next" then
			if #current > 1 then
				advance()
			end
		elseif choice == "delete" then
			bprompt(call, "vm-deleted")
			set_folder(call, box, message, "deleted")
			current = rest(current)
		elseif choice == "return" then
			bprompt(call, "vm-saved")
			set_folder(call, box, message, "saved")
			return "complete"
		elseif choice == "forward" then
			forward_message(call, box, message)
			set_folder(call, box, message, "saved")
			call:play("vm-saved")
			advance()
		end
		-- "replay": the same message again
	end
	return "complete"
end

-- Kazoo's main_menu: nil (done) or "stop".
local function main_menu(call, box)
	if not box.is_setup then
		local setup = setup_mailbox(call, box)
		if setup ~= "ok" then
			return setup == "stop" and "stop" or nil
		end
	end
	local keys = box.keys
	local loop = 1
	while true do
		if loop > 4 then
			bprompt(call, "vm-goodbye")
			return nil
		end
		call:flush_dtmf()
		local new = vmbox.folder_messages(call, box, "new")
		local saved = vmbox.folder_messages(call, box, "saved")
		local items = count_prompts(#new, #saved)
		table.insert(items, { play = box.not_configurable and "vm-main_menu_not_configurable" or "vm-main_menu" })
		local digits = collect(call, box, 1, items)
		if digits == nil then
			return nil
		end
		if digits == keys.exit then
			return nil
		elseif digits == keys.hear_new or digits == keys.hear_saved then
			local folder = digits == keys.hear_new and new or saved
			if play_messages(call, box, folder, #folder) == nil then
				return nil
			end
			loop = 1
		elseif digits == keys.configure and not box.not_configurable then
			local result = config_menu(call, box)
			if result ~= "main" then
				return result
			end
			loop = 1
		else
			loop += 1
		end
	end
end

-- Kazoo's find_mailbox: asks for a box number until one is found (the box
-- and the attempt count) or the attempts run out (nil).
function find_mailbox(call, box, prompt, loop)
	local max_length = vmbox.config_integer(call, { "voicemail", "max_box_number_length" }, 15)
	while loop <= box.max_login_attempts do
		local digits = collect(call, box, max_length, { { play = prompt } })
		if digits == nil then
			return nil
		end
		local doc = digits ~= "" and vmbox.find_by_number(call, digits) or nil
		if doc then
			local found = vmbox.profile_of(call, doc, { id = doc.id }, box.check_default)
			found.check_default = box.check_default
			return found, loop
		end
		bprompt(call, "menu-invalid_entry")
		loop += 1
	end
	return nil
end

-- Kazoo's check_mailbox: nil (done) or "stop".
local function check_mailbox(call, box)
	local loop = 1
	while true do
		if loop > box.max_login_attempts then
			bprompt(call, "vm-abort")
			return nil
		end
		local owner = is_owner(call, box)
		if not box.exists then
			local found, next_loop = find_mailbox(call, box, "vm-enter_id", loop)
			if found then
				box, loop = found, next_loop
			else
				loop = box.max_login_attempts + 1
			end
		elseif owner and (not box.is_setup or not box.require_pin) then
			return main_menu(call, box)
		elseif box.pin == "" then
			bprompt(call, "vm-no_access")
			return nil
		else
			local digits = collect(call, box, max_pin_length(call), { { play = "vm-enter_pass" } })
			if digits == nil then
				return nil
			end
			if digits == box.pin then
				return main_menu(call, box)
			end
			bprompt(call, "vm-fail_auth")
			loop += 1
		end
	end
end

local function finish_check(call, box)
	if check_mailbox(call, box) == "stop" then
		return call:stop()
	end
	return nil
end

---------------------------------------------------------------------------
-- Leaving a message

local function greeting_items(box)
	local items = {}
	if box.play_greeting_intro then
		table.insert(items, { play = "vm-greeting_intro" })
	end
	if box.skip_greeting then
		return items
	end
	if box.temporary_unavailable then
		table.insert(items, { play = box.temporary_unavailable })
	elseif box.unavailable then
		table.insert(items, { play = box.unavailable })
	elseif box.use_person_not_available then
		table.insert(items, { play = "vm-person_not_available" })
	else
		table.insert(items, { play = "vm-person" })
		table.insert(items, { say = box.mailbox_number })
		table.insert(items, { play = "vm-not_available" })
	end
	return items
end

local function record_voicemail(call, box)
	while true do
		call:play(BEEP, { terminators = {} })
		local recording = call:record({ time_limit_s = box.max_message_length, terminators = kazoo.ALL_DIGITS })
		if recording.reason == "hangup" then
			new_message(call, box, recording.recording_id, recording.duration_ms)
			return call:stop()
		end
		call:flush_dtmf()
		local choice, directive = review_recording(call, box, recording.recording_id, true)
		if choice ~= "record" then
			new_message(call, box, recording.recording_id, recording.duration_ms)
			call:play("vm-saved")
			if choice == "branch" then
				return directive
			end
			call:play("vm-thank_you")
			return nil
		end
	end
end

local function compose(call, box)
	if box.check_if_owner and is_owner(call, box) then
		return finish_check(call, box)
	end
	if not box.exists then
		bprompt(call, "vm-not_available_no_voicemail")
		return nil
	end
	local keys = box.keys
	if box.max_message_count > 0 and box.message_count >= box.max_message_count then
		call:log(
			"info",
			string.format("voicemail: box %s is full (%d messages)", box.id, box.message_count)
		)
		local items = greeting_items(box)
		table.insert(items, { play = "vm-mailbox_full" })
		local digit = macro(call, items)
		if digit == HANGUP then
			return call:stop()
		end
		call:flush_dtmf()
		if digit == keys.login then
			return finish_check(call, box)
		end
		return nil
	end
	local items = greeting_items(box)
	if not box.skip_instructions then
		table.insert(items, { play = "vm-record_message" })
	end
	local digit = macro(call, items)
	if digit == HANGUP then
		return call:stop()
	elseif digit == nil then
		return record_voicemail(call, box)
	end
	call:flush_dtmf()
	if digit == keys.login then
		return finish_check(call, box)
	elseif digit == keys.operator then
		local directive = operator_branch(call, box)
		if directive then
			return directive
		end
	elseif keys.continue and digit == keys.continue then
		return nil
	end
	return record_voicemail(call, box)
end

return {
	description = "Leave a voicemail message, or check a voicemail box.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "check", "compose" }, default = "compose" },
			callerid_match_login = { type = "boolean", default = false },
			id = { type = "string", pattern = "^[A-Za-z0-9_-]{1,64}$", description = "vmboxes document id (Kazoo: exactly 32 characters; here any document id)" },
			interdigit_timeout = { type = "integer", default = 2000 },
			max_message_length = { type = "integer", default = 500 },
			single_mailbox_login = { type = "boolean", default = false },
		},
	},
	handle = function(call, data)
		local action = kazoo.string(data.action, "compose")
		if action ~= "compose" and action ~= "check" then
			call:log("info", "voicemail: unknown action " .. action .. "; continuing")
			return nil
		end
		call:answer()
		local check_default = owner_check_default(call, data)
		local box = vmbox.profile(call, data, check_default)
		-- Kazoo's default for check_if_owner, for the boxes found later.
		box.check_default = check_default
		if action == "compose" then
			return compose(call, box)
		end
		return finish_check(call, box)
	end,
}
