-- temporal_route: route by time of day, day of week, date, ... (Kazoo's
-- cf_temporal_route, kazoo-callflows.md §3.3), or manage its rules.
--
-- Data (CODE defaults):
--   action              absent (or any other value): route; "menu",
--                       "enable", "disable", "reset": manage the rules
--   rules               ([]) temporal_rules document ids
--   rule_set            (none) a temporal_rule_sets document id
--   timezone            (the account's; "inherit" = the account's; without
--                       an account time zone, UTC, as call:date does: Kazoo
--                       falls back to the system setting
--                       accounts.default_timezone, "America/Los_Angeles")
--   interdigit_timeout  (2000 ms) for the menu
--
-- Rule documents (temporal_rules/<id>.json), Kazoo's fields and code
-- defaults: cycle ("": the rule is invalid and skipped) date | daily |
-- weekly | monthly | yearly, interval (1), days ([]; days of the month),
-- wdays ([] = all seven; "wensday" accepted), ordinal ("first"; first ..
-- fifth, last, every), month (1), start_date (gregorian seconds, read as a
-- UTC instant and taken as a date in the route's time zone; default: the
-- local time's gregorian seconds, see below), time_window_start (0) and
-- time_window_stop (86400) in seconds of the local day, enabled (true:
-- forced on, false: off, absent: by the clock), name ("no_name"). end_date
-- and flags are not read (Kazoo ignores them too). Rule sets
-- (temporal_rule_sets/<id>.json) list rule ids in `temporal_rules`.
--
-- Routing. The candidate routes, in order: each id of `rules` (child key =
-- the id), each child key of the node but "_" in document order (child key
-- = itself), then each rule of the `rule_set` document (child key
-- "rule_set"). A route whose id (not one from `rule_set`) names a rule set
-- with rules becomes one route per rule of the set, whose child key is the
-- set's id. A rule listed again (an id in `rules` that is also a child key)
-- is tried once, at its first place: Kazoo tries it again, which cannot
-- change the result (a rule that did not match the first time does not
-- match the second) but logs it twice. Every rule document is then loaded
-- (a missing one is skipped, a rule whose start date is after today is
-- dropped) and tried in order; the first match wins:
--   enabled false: skipped; enabled true: matches, whatever the time;
--   cycle missing or "": skipped;
--   otherwise the rule's next date after yesterday (weekly: from today on)
--   is computed (lib/temporal.lua, Kazoo's next_rule_date) and the rule
--   matches when now, in local wall-clock seconds, lies within
--   [that date + time_window_start, that date + time_window_stop]
--   (both ends included).
-- Exits: the matching route's child key (a missing child falls back to
-- "_"); no match: "_".
--
-- Actions: "enable" / "disable" / "reset" set `enabled: true` / `false` /
-- remove `enabled` on each document of `rules` (not on rule sets or
-- children), saving it with call:update_doc (a missing document is skipped),
-- then play "temporal-marked_enabled" / "temporal-marked_disabled" /
-- "temporal-marker_reset". "menu" plays "temporal-menu" and collects one
-- digit (timeout 5000 ms, the interdigit timeout, "#" ends): 1 enables, 2
-- disables, 3 resets; anything else re-prompts. Then the flow continues to
-- "_": Kazoo master calls cf_exe:continue after the action (the 2018
-- source, 4.x, called cf_exe:stop); this follows master, as §3.3 does
-- ("then →_").
--
-- Choices and Kazoo quirks kept:
-- * Evaluation follows master: weekly rules search from today (other
--   cycles from yesterday), with master's weekly clauses (find_active_days
--   counts today; a start date later in the week searches from it), and
--   the window's end is time_window_stop (the 2018 source searched weekly
--   rules from yesterday too and read time_window_start for both ends).
-- * Silence in the menu re-prompts, as in Kazoo: collect_digits returns
--   {ok, <<>>} on a timeout, which the menu treats as "another digit". Only
--   a hang-up leaves the menu without a choice.
-- * A rule without start_date gets Kazoo's default, the local time's
--   gregorian seconds, which Kazoo then converts from UTC to local time
--   again: west of UTC that is earlier the same day or the day before, east
--   of UTC it can be tomorrow, and the rule is then dropped as "in the
--   future".
-- * Rule and set documents are read by type (temporal_rules/,
--   temporal_rule_sets/); Kazoo opens any document of the account database
--   by id. A set without rules is therefore a missing rule here (Kazoo reads
--   the set document as a rule without cycle: skipped, unless it says
--   "enabled": true).
-- * Where Kazoo crashes (an unknown cycle or weekday name, monthly/yearly
--   rules without days and with other than one weekday, interval 0, a date
--   the calendar rejects: a yearly "every" rule evaluated on the 29th-31st
--   asks for the weekday of e.g. 30 February) the module raises an error:
--   recorded, then "_", as Kazoo continues after a crashed module. Two
--   endless loops of Kazoo (an unknown ordinal; a yearly "fifth" weekday
--   that never comes) raise an error instead of hanging.
-- * The fifth-weekday bug and the other arithmetic quirks of next_rule_date
--   are reproduced as is (lib/temporal.lua says which).
-- * Prompts are played as media ids ("temporal-menu", ...), not resolved
--   per language as Kazoo's prompt paths are. The call is not answered, as
--   Kazoo does not.
local kazoo = require("kazoo")
local temporal = require("temporal")

local GREGORIAN_UNIX_OFFSET = 62167219200 -- gregorian seconds of 1970-01-01
local SECONDS_IN_DAY = 86400

local PROMPTS = {
	enable = "temporal-marked_enabled",
	disable = "temporal-marked_disabled",
	reset = "temporal-marker_reset",
	menu = "temporal-menu",
}
local MENU_KEYS = { ["1"] = "enable", ["2"] = "disable", ["3"] = "reset" }

-- A JSON list (Kazoo's get_list_value): an array, else `{}`.
local function list(value: any): { any }
	if type(value) == "table" and (#value > 0 or next(value) == nil) then
		return value
	end
	return {}
end

-- A JSON string as Kazoo's get_binary_value reads it.
local function binary(value: any, default: string): string
	if type(value) == "string" then
		return value
	elseif type(value) == "number" or type(value) == "boolean" then
		return tostring(value)
	end
	return default
end

local function timezone(call, data): string
	local tz = kazoo.string(data.timezone)
	if tz == nil or tz == "inherit" then
		tz = kazoo.string(call:account().timezone, "UTC")
	end
	return tz
end

-- The local date of an instant given in gregorian seconds (kz_date's
-- from_gregorian_seconds: the seconds are UTC).
local function local_date_of(seconds: number, tz: string): (number, number, number)
	local at = calendar.date((seconds - GREGORIAN_UNIX_OFFSET) * 1000, tz)
	return at.year, at.month, at.day
end

-- The rule ids of a rule set; none when there is no such set.
local function rule_set(call, id: string): { string }
	local doc = call:doc("temporal_rule_sets", id)
	local ids = {}
	if doc then
		for _, rule_id in list(doc.temporal_rules) do
			if type(rule_id) == "string" then
				table.insert(ids, rule_id)
			end
		end
	end
	return ids
end

local function rule_ids(data): { string }
	local ids = {}
	for _, id in list(data.rules) do
		if type(id) == "string" then
			table.insert(ids, id)
		end
	end
	return ids
end

-- The (document id, child key) pairs to try, in Kazoo's order.
local function routes(call, data): { { doc: string, key: string } }
	local found = {}
	for _, id in rule_ids(data) do
		table.insert(found, { doc = id, key = id })
	end
	for _, key in call:children() do
		if key ~= "_" then
			table.insert(found, { doc = key, key = key })
		end
	end
	local set_id = kazoo.string(data.rule_set)
	if set_id then
		for _, id in rule_set(call, set_id) do
			table.insert(found, { doc = id, key = "rule_set" })
		end
	end
	local expanded = {}
	local seen = {}
	local function add(candidate)
		if not seen[candidate.doc] then
			seen[candidate.doc] = true
			table.insert(expanded, candidate)
		end
	end
	for _, route in found do
		local members = if route.key == "rule_set" then {} else rule_set(call, route.doc)
		if #members == 0 then
			add(route)
		else
			for _, id in members do
				add({ doc = id, key = route.doc })
			end
		end
	end
	return expanded
end

-- A rule record from its document (Kazoo's build_rule), or nil when the
-- document is missing or the rule starts after today.
local function load_rule(call, route, now)
	local doc = call:doc("temporal_rules", route.doc)
	if not doc then
		call:log("info", string.format("unable to find temporal rule %s", route.doc))
		return nil
	end
	local name = kazoo.string(doc.name, "no_name")
	local sy, sm, sd = local_date_of(kazoo.integer(doc.start_date, now.seconds), now.timezone)
	if temporal.days_of(sy, sm, sd) * SECONDS_IN_DAY > now.seconds then
		call:log(
			"info",
			string.format("rule %s (%s) starts in the future (%s), discarding", route.doc, name, temporal.format_date(sy, sm, sd))
		)
		return nil
	end
	local days = {}
	for _, day in list(doc.days) do
		local n = kazoo.integer(day)
		if n == nil then
			error(string.format("rule %s: day %s is not an integer", route.doc, tostring(day)), 0)
		end
		table.insert(days, n)
	end
	return {
		id = route.doc,
		key = route.key,
		name = name,
		cycle = binary(doc.cycle, ""),
		days = days,
		enabled = kazoo.boolean(doc.enabled, nil),
		interval = kazoo.integer(doc.interval, 1),
		month = kazoo.integer(doc.month, 1),
		ordinal = binary(doc.ordinal, "first"),
		start = { sy, sm, sd },
		wdays = temporal.sort_wdays(list(doc.wdays)),
		wtime_start = kazoo.integer(doc.time_window_start, 0),
		wtime_stop = kazoo.integer(doc.time_window_stop, SECONDS_IN_DAY),
	}
end

-- Kazoo's process_rules: the child key of the first matching rule, or nil.
local function process_rules(call, rules, now): string?
	for _, rule in rules do
		local label = string.format("rule %s (%s)", rule.id, rule.name)
		if rule.enabled == false then
			call:log("info", label .. " is disabled")
		elseif rule.enabled == true then
			call:log("info", label .. " is forced active")
			return rule.key
		elseif rule.cycle == "" then
			call:log("info", label .. " has no cycle, skipping")
		else
			local y, m, d = now.year, now.month, now.day
			if rule.cycle ~= "weekly" then
				y, m, d = temporal.previous_day(y, m, d)
			end
			local by, bm, bd = temporal.normalize(temporal.next_rule_date(rule, y, m, d))
			local base = temporal.days_of(by, bm, bd) * SECONDS_IN_DAY
			local start, stop = base + rule.wtime_start, base + rule.wtime_stop
			if now.seconds < start then
				call:log("info", label .. " applies in the future, " .. temporal.format_seconds(start))
			elseif now.seconds > stop then
				call:log("info", label .. " expired at " .. temporal.format_seconds(stop))
			else
				call:log("info", label .. " is active until " .. temporal.format_seconds(stop))
				return rule.key
			end
		end
	end
	return nil
end

-- Sets (true, false) or removes (nil) `enabled` on each rule document, then
-- plays the confirmation.
local function set_enabled(call, ids: { string }, action: string)
	for _, id in ids do
		local doc = call:doc("temporal_rules", id)
		if doc then
			-- Atomic (call:update_doc): another change made meanwhile is kept.
			local ok, err = pcall(call.update_doc, call, "temporal_rules", id, function(stored)
				if not stored then
					return nil
				end
				if action == "enable" then
					stored.enabled = true
				elseif action == "disable" then
					stored.enabled = false
				else
					stored.enabled = nil
				end
				return stored
			end)
			if not ok then
				call:log("warning", string.format("unable to update temporal rule %s: %s", id, tostring(err)))
			end
		else
			call:log("info", string.format("unable to update temporal rule %s: not found", id))
		end
	end
	call:play(PROMPTS[action])
end

local function menu(call, ids: { string }, interdigit: number)
	while true do
		local entry = call:collect_digits({
			prompt = PROMPTS.menu,
			max = 1,
			timeout_ms = 5000,
			interdigit_ms = interdigit,
			terminators = { "#" },
		})
		if entry.reason == "hangup" then
			return
		end
		local action = MENU_KEYS[entry.digits]
		if action then
			set_enabled(call, ids, action)
			return
		end
	end
end

return {
	description = "Route by temporal rules (time of day, weekdays, dates), or enable/disable/reset them.",
	schema = {
		type = "object",
		properties = {
			action = {
				type = "string",
				enum = { "menu", "enable", "disable", "reset" },
				description = "What action to perform",
			},
			interdigit_timeout = {
				type = "integer",
				description = "How long, in milliseconds, to wait for the next keypress",
			},
			rule_set = { type = "string", description = "ID of the rule set" },
			rules = {
				type = "array",
				items = { type = "string", description = "ID of the temporal rule set to use" },
				default = {},
				description = "List of rule IDs to use",
			},
			timezone = { type = "string", description = "Timezone to use when processing temporal rules" },
		},
	},
	handle = function(call, data)
		local tz = timezone(call, data)
		local at = call:date(tz)
		local now = {
			timezone = tz,
			year = at.year,
			month = at.month,
			day = at.day,
			seconds = temporal.days_of(at.year, at.month, at.day) * SECONDS_IN_DAY
				+ at.hour * 3600
				+ at.minute * 60
				+ at.second,
		}
		local action = kazoo.string(data.action)
		if action == "menu" then
			menu(call, rule_ids(data), kazoo.integer(data.interdigit_timeout, 2000))
			return nil
		elseif action == "enable" or action == "disable" or action == "reset" then
			set_enabled(call, rule_ids(data), action)
			return nil
		end

		call:log("info", string.format("local time in %s is %s", tz, temporal.format_seconds(now.seconds)))
		local rules = {}
		for _, route in routes(call, data) do
			local rule = load_rule(call, route, now)
			if rule then
				table.insert(rules, rule)
			end
		end
		local key = process_rules(call, rules, now)
		if key == nil then
			call:log("info", "no rule matches, continuing with the default child")
		end
		return key
	end,
}
