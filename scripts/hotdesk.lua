-- hotdesk: log a user in to or out of the calling device, or ring the
-- devices a user is logged in to (Kazoo's cf_hotdesk, kazoo-callflows.md
-- §3.1).
--
-- Data:
-- * `action`: "login", "logout", "toggle" or "bridge".
-- * `id`: the user. Without it (login, toggle, bridge) the caller is asked
--   for a hot desk id: "hotdesk-enter_id" while collecting up to 10 digits
--   (5000 ms for the first, `interdigit_timeout` between them, "#" ends);
--   the user whose `hotdesk.id` it is (exactly one) is taken; nothing
--   entered, or no such user ("hotdesk-invalid_entry"), asks again, 3 times
--   in all, then "hotdesk-abort" and "_". For logout without `id`, the
--   calling device's user is taken when it has exactly one (its hot desk
--   users, else its owner). An `id` naming no user: "hotdesk-abort", "_".
-- * `interdigit_timeout` (2000 ms): the user document's own
--   `interdigit_timeout` wins over it for the PIN, as in Kazoo.
--
-- The user document's `hotdesk` object: `id` (the hot desk id), `pin`,
-- `require_pin`, `keep_logged_in_elsewhere`, `enabled`. A user is logged in
-- to a device when the device document has `hotdesk.users.<user id>`
-- (Kazoo's attributes/hotdesk_users view). The endpoint builder
-- (lib/endpoints.lua) counts those users as the device's owners, so the
-- `user` module, ring groups and groups ring the devices the user is
-- logged in to.
--
-- Actions (each then continues to "_"):
-- * login: with `require_pin`, the call is answered and "hotdesk-enter_pin"
--   collects up to 6 digits; a wrong PIN plays "hotdesk-invalid_entry" and
--   asks again, 3 times in all, then "hotdesk-abort", "vm-goodbye". Then,
--   unless `keep_logged_in_elsewhere`, the user is logged out of every
--   device; then logged in to the calling device (hotdesk.users.<id> = {},
--   the device saved: a `store` event), "hotdesk-logged_in",
--   "vm-goodbye". No calling device: "hotdesk-abort", "vm-goodbye". As in
--   Kazoo, `hotdesk.enabled` is not checked for login (a UI bug kept it
--   false), and without a PIN the call is not answered.
-- * logout: answers; with `keep_logged_in_elsewhere`, logs the user out of
--   the calling device only (it is saved even when the user was not on it,
--   as Kazoo does), else out of every device; "hotdesk-logged_out",
--   "vm-goodbye".
-- * toggle: logout when the user is logged in somewhere, else login.
-- * bridge: only when `hotdesk.enabled`: rings the devices the user is
--   logged in to (20 s, simultaneous, in the reverse of their id order, as
--   Kazoo builds the list). Answered: "_" (Kazoo continues after a
--   successful bridge); busy / no answer / failed: the child named by the
--   cause, else "sip:<code>", else "_"; no device to ring: "_". A caller
--   hanging up while it rings: stop.
-- A caller hanging up while entering an id or PIN ends the module ("_",
-- where the next verb finds the call gone).
--
-- Deviations: Kazoo retries a save on a conflict and sends MWI updates to
-- the devices it changes; neither exists here. The hot desk id is looked up
-- among the users' documents (the view Kazoo queries indexes the same
-- field).
local kazoo = require("kazoo")
local endpoints = require("endpoints")

local MAX_ATTEMPTS = 3
local PIN_LENGTH = 6
local ID_LENGTH = 10
local COLLECT_TIMEOUT_MS = 5000
local DEFAULT_INTERDIGIT_MS = 2000
local BRIDGE_TIMEOUT_S = 20

-- The devices user `owner` is logged in to, by id.
local function hotdesk_devices(call, owner)
	local found = {}
	for _, doc in call:docs("devices") do
		local users = kazoo.object(kazoo.object(doc, "hotdesk"), "users")
		if users and users[owner] ~= nil and not doc.pvt_deleted then
			table.insert(found, doc.id)
		end
	end
	return found
end

-- Kazoo's #hotdesk{} record, from a user document.
local function profile(call, user, data)
	local settings = kazoo.object(user, "hotdesk") or {}
	local pin = settings.pin
	if type(pin) == "number" then
		pin = tostring(pin)
	elseif type(pin) ~= "string" then
		pin = nil
	end
	return {
		owner = user.id,
		enabled = kazoo.boolean(settings.enabled, false) == true,
		pin = pin,
		require_pin = kazoo.boolean(settings.require_pin, false) == true,
		keep_logged_in_elsewhere = kazoo.boolean(settings.keep_logged_in_elsewhere, false) == true,
		devices = hotdesk_devices(call, user.id),
		interdigit_ms = kazoo.integer(user.interdigit_timeout, kazoo.integer(data.interdigit_timeout, DEFAULT_INTERDIGIT_MS)),
	}
end

-- The users whose hot desk id is `hotdesk_id`.
local function users_with_hotdesk_id(call, hotdesk_id)
	local found = {}
	for _, user in call:docs("users") do
		local settings = kazoo.object(user, "hotdesk")
		local id = settings and settings.id
		if type(id) == "number" then
			id = tostring(id)
		end
		if id == hotdesk_id then
			table.insert(found, user)
		end
	end
	return found
end

-- Answers, then collects up to `max` digits after `prompt` ("#" ends).
local function ask(call, prompt, max, interdigit)
	call:answer()
	return call:collect_digits({
		prompt = prompt,
		max = max,
		timeout_ms = COLLECT_TIMEOUT_MS,
		interdigit_ms = interdigit,
		terminators = "#",
	})
end

-- Asks for a hot desk id: the profile, or nil.
local function find_profile(call, data)
	local interdigit = kazoo.integer(data.interdigit_timeout, DEFAULT_INTERDIGIT_MS)
	for _ = 1, MAX_ATTEMPTS do
		local entry = ask(call, "hotdesk-enter_id", ID_LENGTH, interdigit)
		if entry.reason == "hangup" then
			return nil
		end
		if entry.digits ~= "" then
			local users = users_with_hotdesk_id(call, entry.digits)
			if #users == 1 then
				call:log("info", "hotdesk: id " .. entry.digits .. " is user " .. users[1].id)
				return profile(call, users[1], data)
			end
			call:log("info", "hotdesk: no user has hot desk id " .. entry.digits)
			call:play("hotdesk-invalid_entry")
		end
	end
	call:log("info", "hotdesk: too many attempts to enter a hot desk id")
	call:play("hotdesk-abort")
	return nil
end

-- The user a logout is for, when the data names none: the calling device's
-- only user.
local function logout_user(call)
	local device = call.calling_device and call:doc("devices", call.calling_device)
	if not device then
		return nil
	end
	local owners = endpoints.device_owners(device)
	if #owners == 1 then
		return owners[1]
	end
	return nil
end

local function get_profile(call, data, action)
	local id = kazoo.string(data.id)
	if not id and action == "logout" then
		id = logout_user(call)
	end
	if not id then
		return find_profile(call, data)
	end
	local user = call:doc("users", id)
	if not user then
		call:log("info", "hotdesk: no user " .. id)
		call:play("hotdesk-abort")
		return nil
	end
	return profile(call, user, data)
end

local function goodbye(call, prompt)
	call:play(prompt)
	call:play("vm-goodbye")
end

-- Adds (true) or removes (false) the user in device_id's hotdesk.users.
local function set_logged_in(call, device_id, owner, logged_in)
	kazoo.update_doc(call, "devices", device_id, function(body)
		local hotdesk = kazoo.object(body, "hotdesk") or {}
		local users = kazoo.object(hotdesk, "users") or {}
		users[owner] = if logged_in then {} else nil
		hotdesk.users = users
		body.hotdesk = hotdesk
	end)
	call:log(
		"info",
		string.format("hotdesk: %s logged %s devices/%s", owner, if logged_in then "in to" else "out of", device_id)
	)
end

local function logout_everywhere(call, hd)
	for _, device_id in hd.devices do
		set_logged_in(call, device_id, hd.owner, false)
	end
end

-- Whether the caller entered the PIN (or none is required).
local function pin_ok(call, hd)
	if not hd.require_pin then
		return true
	end
	for _ = 1, MAX_ATTEMPTS do
		local entry = ask(call, "hotdesk-enter_pin", PIN_LENGTH, hd.interdigit_ms)
		if entry.reason == "hangup" then
			call:log("info", "hotdesk: the caller hung up during login")
			return false
		end
		if hd.pin and entry.digits == hd.pin then
			return true
		end
		call:play("hotdesk-invalid_entry")
	end
	call:log("info", "hotdesk: too many invalid PINs")
	goodbye(call, "hotdesk-abort")
	return false
end

local function login(call, hd)
	if not pin_ok(call, hd) then
		return
	end
	if not hd.keep_logged_in_elsewhere then
		logout_everywhere(call, hd)
	end
	local device_id = call.calling_device
	if not device_id or not call:doc("devices", device_id) then
		call:log("info", "hotdesk: no calling device to log in to")
		goodbye(call, "hotdesk-abort")
		return
	end
	set_logged_in(call, device_id, hd.owner, true)
	goodbye(call, "hotdesk-logged_in")
end

local function logout(call, hd)
	call:answer()
	if not hd.keep_logged_in_elsewhere then
		logout_everywhere(call, hd)
	elseif call.calling_device then
		if not call:doc("devices", call.calling_device) then
			goodbye(call, "hotdesk-abort")
			return
		end
		set_logged_in(call, call.calling_device, hd.owner, false)
	end
	goodbye(call, "hotdesk-logged_out")
end

local function bridge(call, hd)
	if not hd.enabled then
		call:log("info", "hotdesk: hot desking is not enabled for " .. hd.owner)
		return nil
	end
	local list = {}
	for i = #hd.devices, 1, -1 do
		endpoints.add(call, list, hd.devices[i], { source = "hotdesk" }, "hotdesk: not ringing ")
	end
	if #list == 0 then
		call:log("info", "hotdesk: " .. hd.owner .. " is logged in to no device that can ring")
		return nil
	end
	local outcome = endpoints.bridge(call, list, { timeout_s = BRIDGE_TIMEOUT_S })
	if outcome.status == "hangup" then
		return call:stop()
	end
	return endpoints.failure_child(call, outcome)
end

return {
	description = "Hot desking: log a user in to or out of this device, or ring the devices a user is logged in to.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "logout", "login", "toggle", "bridge" } },
			id = { type = "string" },
			interdigit_timeout = { type = "integer" },
		},
	},
	handle = function(call, data)
		local action = kazoo.string(data.action)
		local hd = get_profile(call, data, action)
		if not hd then
			return nil
		end
		if action == "toggle" then
			action = if #hd.devices == 0 then "login" else "logout"
		end
		if action == "bridge" then
			return bridge(call, hd)
		elseif action == "login" then
			login(call, hd)
		elseif action == "logout" then
			logout(call, hd)
		else
			-- Kazoo's handle_action has no clause for it: the module crashes.
			error("hotdesk: unknown action " .. tostring(data.action), 0)
		end
		return nil
	end,
}
