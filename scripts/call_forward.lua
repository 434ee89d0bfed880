-- call_forward: the caller manages their call forwarding (Kazoo's
-- cf_call_forward), e.g. behind the feature codes *72 (activate), *73
-- (deactivate), *74 (toggle) and *56 (update).
--
-- Data fields: `action`: "activate", "deactivate", "update", "toggle" or
-- "menu".
--
-- Whose settings: the owner (`owner_id`) of the calling device
-- (`call.calling_device`), else the device itself. They live in that
-- user's (or device's) document under `call_forward`: `enabled` and
-- `number` are changed here (`require_keypress`, `keep_caller_id` and
-- other keys are kept); the document is saved with call:update_doc
-- (a `store` event), and a log line says what was saved. No calling
-- device, or no such document: plays "cf-not_available" and stops.
--
-- Otherwise the call is answered, then (capture group = the digits after
-- the feature code, e.g. "4155550142" from "*724155550142"; used as dialled,
-- not normalized):
-- * activate: with a capture group, forward to it; without, ask for the
--   number ("update" below); then "cf-now_forwarded_to", the number spelled
--   out, and enable;
-- * deactivate: "cf-disabled", disable;
-- * update: with a capture group, it becomes the number silently; without,
--   "cf-enter_number" while collecting up to 20 digits ("#" ends, 8000 ms
--   for the first digit after the prompt); fewer than 3 digits (a timeout
--   too) asks again, until the caller hangs up; then "vm-saved";
-- * toggle: when disabled with a number on file, "cf-now_forwarded_to" +
--   the number and enable; when disabled without one, activate; when
--   enabled, deactivate;
-- * menu: "cf-enabled_menu" or "cf-disabled_menu" while collecting one
--   digit (8000 ms): 1 toggles, 2 updates the number, any other digit or
--   none plays the menu again; only a hang-up ends it (then the settings
--   are saved, as in Kazoo);
-- * any other action: nothing is saved.
-- Then continue to "_". A hang-up while a number is being entered ends the
-- module without saving (Kazoo exits there).
local kazoo = require("kazoo")

local MIN_NUMBER_LENGTH = 3
local MAX_NUMBER_LENGTH = 20
local NUMBER_TIMEOUT_MS = 8000
local MENU_TOGGLE = "1"
local MENU_CHANGE_NUMBER = "2"

-- Deep copy (documents are read-only).
local copy = kazoo.copy

-- The document holding the caller's settings: doc type, id, document.
local function settings_doc(call)
	local device_id = call.calling_device
	if not device_id then
		return nil
	end
	local device = call:doc("devices", device_id)
	local owner_id = device and kazoo.string(device.owner_id)
	if owner_id then
		local user = call:doc("users", owner_id)
		if user then
			return "users", owner_id, user
		end
		return nil
	end
	if device then
		return "devices", device_id, device
	end
	return nil
end

-- Raised (and caught in handle) when the caller hangs up while entering a
-- number: Kazoo's exit('normal'), nothing saved.
local GONE = {}

-- Runs a verb; a verb refused because the caller is gone returns nil
-- (Kazoo ignores failed prompts and saves the settings all the same).
local function try(verb, call, ...)
	local ok, result = pcall(verb, call, ...)
	if ok then
		return result
	elseif result == "hangup" then
		return nil
	end
	error(result, 0)
end

local function prompt(call, media)
	try(call.play, call, media)
end

local function update_number(call, cf, captured)
	if captured then
		cf.number = captured
		return
	end
	while true do
		local entry = try(call.collect_digits, call, {
			prompt = "cf-enter_number",
			max = MAX_NUMBER_LENGTH,
			timeout_ms = NUMBER_TIMEOUT_MS,
			interdigit_ms = 2000,
			terminators = "#",
		})
		if not entry or entry.reason == "hangup" then
			error(GONE)
		end
		if #entry.digits >= MIN_NUMBER_LENGTH then
			prompt(call, "vm-saved")
			cf.number = entry.digits
			return
		end
	end
end

local function announce(call, number)
	prompt(call, "cf-now_forwarded_to")
	try(call.say, call, number, { type = "name_spelled" })
end

local function activate(call, cf, captured)
	if captured then
		announce(call, captured)
		cf.enabled = true
		cf.number = captured
		return
	end
	update_number(call, cf, nil)
	announce(call, cf.number)
	cf.enabled = true
end

local function deactivate(call, cf)
	prompt(call, "cf-disabled")
	cf.enabled = false
end

local function toggle(call, cf, captured)
	if not cf.enabled and cf.number ~= "" then
		announce(call, cf.number)
		cf.enabled = true
	elseif not cf.enabled then
		activate(call, cf, captured)
	else
		deactivate(call, cf)
	end
end

local function menu(call, cf, captured)
	while true do
		call:flush_dtmf()
		local entry = try(call.collect_digits, call, {
			prompt = if cf.enabled then "cf-enabled_menu" else "cf-disabled_menu",
			max = 1,
			timeout_ms = NUMBER_TIMEOUT_MS,
			interdigit_ms = 2000,
		})
		if not entry or entry.reason == "hangup" then
			return
		end
		if entry.digits == MENU_TOGGLE then
			toggle(call, cf, captured)
		elseif entry.digits == MENU_CHANGE_NUMBER then
			update_number(call, cf, captured)
		end
	end
end

local ACTIONS = {
	activate = activate,
	deactivate = deactivate,
	update = update_number,
	toggle = toggle,
	menu = menu,
}

-- Re-reads the document (as Kazoo's update_callfwd does) and saves it with
-- the new settings, atomically (call:update_doc: a change another call made
-- meanwhile is kept).
local function save(call, doc_type, id, doc, cf)
	call:update_doc(doc_type, id, function(stored)
		local body = copy(stored or doc)
		body.id = nil
		local settings = type(body.call_forward) == "table" and body.call_forward or {}
		settings.enabled = cf.enabled
		settings.number = cf.number
		body.call_forward = settings
		return body
	end)
	call:log(
		"info",
		string.format("call_forward: %s/%s enabled=%s number=%s", doc_type, id, tostring(cf.enabled), cf.number)
	)
end

return {
	description = "Activate, deactivate, toggle or change the caller's call forwarding.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "activate", "deactivate", "update", "toggle", "menu" } },
		},
	},
	handle = function(call, data)
		local doc_type, id, doc = settings_doc(call)
		if not doc_type then
			call:play("cf-not_available")
			return call:stop()
		end
		call:answer()
		local settings = type(doc.call_forward) == "table" and doc.call_forward or {}
		local number = settings.number
		local cf = {
			enabled = kazoo.boolean(settings.enabled, false),
			number = if type(number) == "string" then number else "",
		}
		local action = ACTIONS[kazoo.string(data.action, "")]
		if not action then
			call:log("info", "call_forward: improper action " .. tostring(data.action))
			return nil
		end
		local ok, err = pcall(action, call, cf, kazoo.string(call.capture_group))
		if not ok then
			if err == GONE then
				return call:stop()
			end
			error(err, 0)
		end
		save(call, doc_type, id, doc, cf)
		return nil
	end,
}
