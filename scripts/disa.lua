-- disa: direct inward system access (Kazoo's cf_disa, kazoo-callflows.md
-- §3.1): after a PIN, the caller dials a number as if from inside the
-- account.
--
-- Data (CODE defaults):
-- * `pin` (""): empty: no PIN asked.
-- * `retries` (3): PIN attempts, and number attempts.
-- * `interdigit` (2000 ms): between digits of the PIN and of the number.
-- * `max_digits` (15): of the number.
-- * `preconnect_audio` ("dialtone") | "ringing": what the caller hears
--   while dialling (dial tone 350+440 Hz; ringing 440+480 Hz, 2 s on 4 s
--   off, `ring_repeat_count` (1) times); any other value: nothing.
-- * `use_account_caller_id` (true, Kazoo's system default): the call then
--   presents the account's external caller id (`caller_id.external`);
--   false: the caller's own.
-- * `enforce_call_restriction` (false): the account's call_restriction for
--   the number's class (Kazoo's classifiers) is enforced.
--
-- The call is answered. PIN: "disa-enter_pin" while collecting up to
-- max(10, PIN length) digits (5000 ms for the first, "#" ends); a wrong one
-- plays "disa-invalid_pin" and asks again; after `retries` wrong ones,
-- "disa-retries_exceeded" and stop. A hang-up: stop.
-- Number: the preconnect audio while collecting up to `max_digits` digits
-- (5000 ms, "#" ends; nothing entered: collected again, until a hang-up,
-- which stops); the number is normalized (call:normalize) and looked up as
-- a route (numbers, patterns, no_match). Found: the call branches to that
-- callflow (with enforce_call_restriction and an account "deny" for the
-- class: the call is answered, "cf-unauthorized_call", hang up). Not
-- found: "disa-invalid_extension" and the number is asked again, `retries`
-- times in all, then "_".
--
-- Exits: branch (a number found), "_" (no number found after the retries),
-- stop (bad PIN, hang-up), hang-up (restricted number).
--
-- Deviations: Kazoo's tones play while the digits are collected, the
-- timeout running meanwhile; here the tone is the collection's prompt (a
-- digit stops it; the 5000 ms start after it). An absent `pin` makes
-- Kazoo's module crash; here it counts as "" (the schema default Crossbar
-- writes); a numeric `pin` (which would crash Kazoo too) is read as its
-- digits. Kazoo normalizes with knm_converters only; call:normalize also
-- applies the account's dial plan. With use_account_caller_id and no
-- external caller id on the account, Kazoo falls back to system defaults;
-- here the caller id is left as it is.
local kazoo = require("kazoo")

local COLLECT_TIMEOUT_MS = 5000
local DEFAULT_INTERDIGIT_MS = 2000
local DEFAULT_PIN_LENGTH = 10
local DIALTONE = "tone_stream://%(10000,0,350,440)"

local function ringing(data)
	local repeats = kazoo.integer(data.ring_repeat_count, 1) :: number
	return string.format("tone_stream://%%(2000,4000,440,480);loops=%d", repeats)
end

local function preconnect_audio(data)
	local kind = kazoo.string(data.preconnect_audio, "dialtone")
	if kind == "dialtone" then
		return DIALTONE
	elseif kind == "ringing" then
		return ringing(data)
	end
	return nil
end

-- Whether the caller entered the PIN: true, or false (stop).
local function pin_ok(call, pin, retries, interdigit)
	if pin == "" then
		call:log("warning", "disa: no pin set, permitting")
		return true
	end
	while retries > 0 do
		local entry = call:collect_digits({
			prompt = "disa-enter_pin",
			max = math.max(DEFAULT_PIN_LENGTH, #pin),
			timeout_ms = COLLECT_TIMEOUT_MS,
			interdigit_ms = interdigit,
			terminators = "#",
		})
		if entry.reason == "hangup" then
			return false
		elseif entry.digits == pin then
			return true
		end
		call:log("info", "disa: bad pin " .. entry.digits)
		call:play("disa-invalid_pin")
		retries -= 1
	end
	call:log("info", "disa: retries for the pin exceeded")
	call:play("disa-retries_exceeded")
	return false
end

-- The destination: the normalized number, or nil when the caller hung up.
local function collect_number(call, data, interdigit)
	local prompt = preconnect_audio(data)
	while true do
		local entry = call:collect_digits({
			prompt = prompt,
			max = kazoo.integer(data.max_digits, 15),
			timeout_ms = COLLECT_TIMEOUT_MS,
			interdigit_ms = interdigit,
			terminators = "#",
		})
		if entry.reason == "hangup" then
			return nil
		elseif entry.digits ~= "" then
			return call:normalize(entry.digits)
		end
		prompt = nil -- Kazoo starts the tone once
	end
end

local function use_account_caller_id(call)
	local external = kazoo.object(kazoo.object(call:account(), "caller_id"), "external")
	local number = external and kazoo.string(external.number)
	if not number then
		call:log("info", "disa: the account has no external caller id; keeping the caller's")
		return
	end
	call:set_caller_id({ name = kazoo.string(external.name, number), number = number })
end

local function restricted(call, number)
	local class = kazoo.classify(number)
	local rules = kazoo.object(call:account(), "call_restriction")
	local rule = class and kazoo.object(rules, class)
	return rule ~= nil and rule.action == "deny"
end

return {
	description = "DISA: after a PIN, the caller dials a number that is routed as if from inside the account.",
	schema = {
		type = "object",
		properties = {
			pin = { type = "string", default = "" },
			retries = { type = "integer", default = 3 },
			interdigit = { type = "integer" },
			max_digits = { type = "integer", default = 15 },
			preconnect_audio = { type = "string", enum = { "dialtone", "ringing" }, default = "dialtone" },
			ring_repeat_count = { type = "integer", default = 1 },
			use_account_caller_id = { type = "boolean" },
			enforce_call_restriction = { type = "boolean", default = false },
		},
	},
	handle = function(call, data)
		call:answer()
		local pin = data.pin
		if type(pin) == "number" then
			pin = tostring(pin)
		elseif type(pin) ~= "string" then
			pin = ""
		end
		local retries = kazoo.integer(data.retries, 3) :: number
		local interdigit = kazoo.integer(data.interdigit, DEFAULT_INTERDIGIT_MS) :: number
		if not pin_ok(call, pin, retries, interdigit) then
			return call:stop()
		end
		for _ = 1, retries do
			local number = collect_number(call, data, interdigit)
			if not number then
				return call:stop()
			end
			call:log("info", "disa: the caller is trying to call " .. number)
			if kazoo.boolean(data.use_account_caller_id, true) then
				use_account_caller_id(call)
			end
			local route = call:lookup(number)
			if route then
				if kazoo.boolean(data.enforce_call_restriction, false) and restricted(call, number) then
					call:log("info", "disa: the account's call restrictions deny " .. number)
					call:play("cf-unauthorized_call")
					call:hangup()
					return nil
				end
				return call:branch(route)
			end
			call:log("info", "disa: no callflow for " .. number)
			call:play("disa-invalid_extension")
		end
		call:log("info", "disa: retries exceeded for finding a callflow")
		return nil
	end,
}
