-- directory: dial by name (Kazoo's cf_directory, kazoo-callflows.md §3.1;
-- the algorithm of Kazoo master's cf_directory.erl).
--
-- Data: `id`, the directory (directories/<id>): `sort_by` ("last_name"
-- default | "first_name": the order matches are offered in),
-- `search_fields` ("both" default | "first_name" | "last_name"),
-- `confirm_match` (false), `min_dtmf` (3) and `max_dtmf` (0) (read but
-- unused by Kazoo's code, here too). The directory's users are the users
-- whose `directories` object has the directory's id, the value being the
-- callflow to route to; a user's name is `first_name` + `last_name`.
--
-- The call is answered. Then (each "collect" waits 2000 ms for a digit):
-- 1. the prompt for the search fields ("dir-enter_person_name",
--    "dir-enter_person_firstname" or "dir-enter_person_lastname") collects
--    one digit; none: the prompt again, 3 times in all, then
--    "dir-specify_minimum", "dir-no_results_found" and stop;
-- 2. then up to 100 more digits ("#" ends, 2000 ms between digits): none:
--    "dir-specify_minimum" and step 1 (3 tries again); exactly "0": the
--    caller leaves the directory ("_");
-- 3. the digits are matched against the names on the keypad (letters only:
--    "Smith" is 76484): with "both", first name then last name, or last
--    name then first name, must start with them;
--    * no user: "dir-no_results_found", step 1;
--    * one user: with `confirm_match`, "dir-found", the name and
--      "dir-confirm_menu" collect a digit: 1 routes, anything else starts
--      over (step 1); without it, routes;
--    * several: for each in turn, "dir-result_number", the name,
--      "dir-result_menu" collect a digit (nothing: waits 2000 ms more; 3
--      silences: "dir-no_more_results" and stop): 1 routes, 2 the next one
--      (after the last: "dir-no_more_results", step 1), 3 starts over, any
--      other "dir-invalid_key" and the same one again.
-- The name is the user's recorded name (the media document of
-- `media.name`) when there is one, else spoken by TTS.
-- Routing branches to the user's callflow (this node's "_" is where a flow
-- that stops returns); a callflow that does not exist: "_".
--
-- Exits: routed: branch; no users in the directory, the caller pressing 0,
-- a missing callflow: "_"; too many silences, the caller hanging up: stop.
-- Deviations: a directory id with no document makes Kazoo's module crash
-- (and the call continue with "_"): here it is logged and continues with
-- "_". A user without a first or last name crashes Kazoo's listing; here
-- the missing part counts as "".
local kazoo = require("kazoo")

local TIMEOUT_MS = 2000
local MAX_LOOPS = 3
local MAX_DIGITS = 100

local PROMPTS = {
	both = "dir-enter_person_name",
	first = "dir-enter_person_firstname",
	last = "dir-enter_person_lastname",
}

-- The field name as Kazoo reads it ("first..." is first, anything else
-- last; search_fields also has "both").
local function field(value, default)
	local v = kazoo.string(value, default) :: string
	if v == "both" then
		return "both"
	elseif string.sub(v, 1, 5) == "first" then
		return "first"
	end
	return "last"
end

-- Kazoo's cf_util:alpha_to_dialpad: letters to their keypad digits.
local KEYPAD = {}
for digit, letters in { ["2"] = "abc", ["3"] = "def", ["4"] = "ghi", ["5"] = "jkl", ["6"] = "mno", ["7"] = "pqrs", ["8"] = "tuv", ["9"] = "wxyz" } do
	for i = 1, #letters do
		KEYPAD[string.sub(letters, i, i)] = digit
	end
end

local function dialpad(text)
	return (string.gsub(string.lower(text), ".", function(c)
		return KEYPAD[c] or ""
	end))
end

-- The directory's users: {id, first, last, full, first_last, last_first,
-- callflow, media}, by user id (the order of Kazoo's view).
local function listing(call, dir_id)
	local users = {}
	for _, doc in call:docs("users") do
		local dirs = kazoo.object(doc, "directories")
		local callflow = dirs and kazoo.string(dirs[dir_id])
		if callflow then
			local first = kazoo.string(doc.first_name, "") :: string
			local last = kazoo.string(doc.last_name, "") :: string
			local media = kazoo.object(doc, "media")
			table.insert(users, {
				id = doc.id,
				first = first,
				last = last,
				full = first .. " " .. last,
				first_last = dialpad(first .. last),
				last_first = dialpad(last .. first),
				callflow = callflow,
				media = media and kazoo.string(media.name),
			})
		end
	end
	return users
end

local function sort_users(users, by)
	local a_key, b_key = "last", "first"
	if by == "first" then
		a_key, b_key = "first", "last"
	end
	table.sort(users, function(a, b)
		if a[a_key] ~= b[a_key] then
			return a[a_key] < b[a_key]
		elseif a[b_key] ~= b[b_key] then
			return a[b_key] < b[b_key]
		end
		return a.id < b.id
	end)
end

local function starts_with(keys, digits)
	return #digits > 0 and string.sub(keys, 1, #digits) == digits
end

local function filter_users(users, digits, fields)
	local out = {}
	for _, u in users do
		local first_ok = fields ~= "last" and starts_with(u.first_last, digits)
		local last_ok = fields ~= "first" and starts_with(u.last_first, digits)
		if first_ok or last_ok then
			table.insert(out, u)
		end
	end
	return out
end

-- Raised when the caller hangs up: the module stops.
local GONE = {}

local function check(outcome)
	if outcome.reason == "hangup" then
		error(GONE)
	end
	return outcome
end

-- Kazoo's play_and_collect: plays the items (a digit stops them) and
-- collects one digit.
local function play_and_collect(call, items)
	for _, item in items do
		local outcome
		if item.tts then
			outcome = check(call:tts(item.tts))
		else
			outcome = check(call:play(item.play))
		end
		if outcome.reason == "terminator" then
			break
		end
	end
	return check(call:collect_digits({ max = 1, timeout_ms = TIMEOUT_MS, interdigit_ms = TIMEOUT_MS })).digits
end

local function name_item(call, user)
	if user.media and call:doc("media", user.media) then
		return { play = user.media }
	end
	return { tts = user.full }
end

-- Routes to the user's callflow: a branch, or "_" when it does not exist.
local function route(call, user)
	call:log("info", "directory: routing to " .. user.full .. " (callflow " .. user.callflow .. ")")
	local directive, err = call:branch(user.callflow)
	if directive == nil then
		call:log("info", "directory: cannot route to callflow " .. user.callflow .. ": " .. tostring(err))
		return nil
	end
	return directive
end

local run

-- Offers several matches in turn.
local function matches_menu(call, state, matches)
	local i = 1
	while i <= #matches do
		local user = matches[i]
		local choice = nil
		for _ = 1, MAX_LOOPS do
			local digit = play_and_collect(
				call,
				{ { play = "dir-result_number" }, name_item(call, user), { play = "dir-result_menu" } }
			)
			if digit == "" then
				digit = check(call:collect_digits({ max = 1, timeout_ms = TIMEOUT_MS })).digits
			end
			if digit ~= "" then
				choice = digit
				break
			end
		end
		if not choice then
			call:log("info", "directory: no choice made; stopping")
			call:play("dir-no_more_results")
			return call:stop()
		elseif choice == "1" then
			return route(call, user)
		elseif choice == "2" then
			i += 1
		elseif choice == "3" then
			return run(call, state)
		else
			call:play("dir-invalid_key")
		end
	end
	call:play("dir-no_more_results")
	return run(call, state)
end

local function maybe_match(call, state, digits)
	local matches = filter_users(state.users, digits, state.fields)
	call:log("info", string.format("directory: %s matches %d user(s)", digits, #matches))
	if #matches == 0 then
		call:play("dir-no_results_found")
		return run(call, state)
	elseif #matches == 1 then
		local user = matches[1]
		if state.confirm then
			call:flush_dtmf()
			local digit = play_and_collect(
				call,
				{ { play = "dir-found" }, name_item(call, user), { play = "dir-confirm_menu" } }
			)
			if digit ~= "1" then
				return run(call, state)
			end
		end
		return route(call, user)
	end
	return matches_menu(call, state, matches)
end

-- Kazoo's directory_start: up to 3 prompts for a first digit.
function run(call, state)
	for _ = 1, MAX_LOOPS do
		call:flush_dtmf()
		local first = play_and_collect(call, { { play = PROMPTS[state.fields] } })
		if first ~= "" then
			local rest = check(call:collect_digits({
				max = MAX_DIGITS,
				timeout_ms = TIMEOUT_MS,
				interdigit_ms = TIMEOUT_MS,
				terminators = "#",
			})).digits
			if rest == "" then
				call:play("dir-specify_minimum")
				return run(call, state)
			elseif rest == "0" then
				call:log("info", "directory: the caller left the directory")
				return nil
			end
			return maybe_match(call, state, first .. rest)
		end
	end
	call:log("info", "directory: no digits entered; stopping")
	call:play("dir-specify_minimum")
	call:play("dir-no_results_found")
	return call:stop()
end

return {
	description = "Dial by name: find a user of a directory on the keypad and route to their callflow.",
	schema = {
		type = "object",
		properties = {
			id = { type = "string" },
		},
	},
	handle = function(call, data)
		local dir_id = kazoo.string(data.id)
		local dir = dir_id and call:doc("directories", dir_id)
		if not dir then
			call:log("warning", "directory: no directory " .. tostring(dir_id) .. "; continuing")
			return nil
		end
		call:answer()
		local users = listing(call, dir_id)
		if #users == 0 then
			call:log("info", "directory: no users in directory " .. tostring(dir_id))
			call:play("dir-no_results_found")
			return nil
		end
		local state = {
			users = users,
			fields = field(dir.search_fields, "both"),
			confirm = kazoo.boolean(dir.confirm_match, false) == true,
		}
		sort_users(users, field(dir.sort_by, "last_name"))
		local ok, result = pcall(run, call, state)
		if not ok then
			if result == GONE then
				return call:stop()
			end
			error(result, 0)
		end
		return result
	end,
}
