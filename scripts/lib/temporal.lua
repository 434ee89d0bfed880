-- temporal: the date arithmetic of Kazoo's temporal rules, for the
-- temporal_route module. A transcription of cf_temporal_route.erl's
-- next_rule_date/2 and its helpers (find_ordinal_weekday, find_last_weekday,
-- date_of_dow, iso_week_difference, find_active_days, sort_wdays) and of
-- kz_date.erl (normalize, find_next_weekday, wday_to_dow,
-- ordinal_to_position), as of Kazoo master (5.x). Dates are plain
-- (year, month, day) triples, as Erlang's {Y, M, D} tuples.
--
-- Where Erlang would crash (a function_clause for an unknown cycle, an
-- invalid date handed to the calendar module, a division by a zero
-- interval) this raises a Lua error with the reason, so the module fails as
-- Kazoo's does (recorded, then "_"). Two of Kazoo's endless loops are
-- bounded here and raise an error instead: find_ordinal_weekday with an
-- ordinal that is not first..fifth (Kazoo retries month after month for
-- ever) and find_next_yearly_ordinal_weekday looking for a "fifth" weekday
-- that never comes (bounded at 1000 rounds).
--
-- Kazoo's own bugs are kept, not fixed: notably the "fifth weekday with
-- interval > 1" one (a fifth occurrence that does not exist spills into the
-- next month; for interval > 1 the date then moves to a later active month,
-- for interval 1 the spilled date is used: a monthly "fifth Thursday" rule
-- matches Thursday 1 October 2026 because September has four), a monthly
-- day the month lacks carried into the next month (days [1, 15, 31]: "31
-- February" is 3 March, which hides 1 March),
-- the month-only comparison of the monthly ordinal rule with interval 1
-- (`M1 < M2`, blind to a change of year), and `days` used in the order
-- given: the first listed day still to come wins, so unsorted days give odd
-- predictions (Kazoo's "GOTCHA": keep them sorted).
local temporal = {}

local WDAYS = {
	monday = 1,
	tuesday = 2,
	wednesday = 3,
	wensday = 3, -- Kazoo's historical spelling, still accepted
	thursday = 4,
	friday = 5,
	saturday = 6,
	sunday = 7,
}

local DOW_NAMES = { "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday" }

local ORDINALS = { first = 0, second = 1, third = 2, fourth = 3, fifth = 4 }

-- Erlang's trunc(A / B): the quotient rounded towards zero; a zero divisor
-- is Erlang's badarith.
local function trunc_div(a: number, b: number): number
	if b == 0 then
		error("badarith: interval 0", 0)
	end
	local q = a / b
	if q >= 0 then
		return math.floor(q)
	end
	return math.ceil(q)
end
temporal.trunc_div = trunc_div

-- kz_date:wday_to_dow/1 (1 = Monday .. 7 = Sunday); an unknown name is a
-- function_clause in Kazoo.
function temporal.wday_to_dow(name: any): number
	local dow = type(name) == "string" and WDAYS[name]
	if not dow then
		error(string.format("function_clause: kz_date:wday_to_dow(%s)", tostring(name)), 0)
	end
	return dow
end

-- kz_date:ordinal_to_position/1 (first = 0 .. fifth = 4).
function temporal.ordinal_to_position(ordinal: string): number
	local position = ORDINALS[ordinal]
	if not position then
		error(string.format("function_clause: kz_date:ordinal_to_position(%s)", tostring(ordinal)), 0)
	end
	return position
end

-- Gregorian days of a date; an invalid date raises, like Erlang's calendar.
local function days_of(y: number, m: number, d: number): number
	return calendar.to_days(y, m, d)
end
temporal.days_of = days_of

-- Erlang's date tuple comparison ({Y, M, D} < {Y, M, D}).
local function before(y1, m1, d1, y2, m2, d2): boolean
	if y1 ~= y2 then
		return y1 < y2
	elseif m1 ~= m2 then
		return m1 < m2
	end
	return d1 < d2
end

-- kz_date:days_in_month/2, which also takes month 0 (the previous December)
-- and 13 (the next January).
local function days_in_month(y: number, m: number): number
	if m == 0 then
		return calendar.days_in_month(y - 1, 12)
	elseif m == 13 then
		return calendar.days_in_month(y + 1, 1)
	end
	return calendar.days_in_month(y, m)
end

-- kz_date:normalize/1: carries an overflowing day or month into the next
-- month or year ({2011, 1, 36} -> {2011, 2, 5}); month 0 is the previous
-- December and day 0 the last day of the previous month.
function temporal.normalize(y: number, m: number, d: number): (number, number, number)
	while true do
		if m == 0 then
			y, m = y - 1, 12
		elseif d == 0 then
			local y1, m1 = temporal.normalize(y, m - 1, 1)
			y, m, d = y1, m1, calendar.days_in_month(y1, m1)
		elseif m > 12 and m // 12 > 0 then
			y, m = y + m // 12, m % 12
		else
			local over = d - days_in_month(y, m)
			if over > 0 then
				m, d = m + 1, over
			else
				return y, m, d
			end
		end
	end
end
local normalize = temporal.normalize

-- kz_date:find_next_weekday/2: the next `wday` strictly after the date.
function temporal.find_next_weekday(y: number, m: number, d: number, wday: string): (number, number, number)
	local ref = temporal.wday_to_dow(wday)
	local dow = calendar.weekday(y, m, d)
	if dow == ref then
		return normalize(y, m, d + 7)
	elseif ref > dow then
		return normalize(y, m, d + (ref - dow))
	end
	return normalize(y, m, d + (7 - dow) + ref)
end
local find_next_weekday = temporal.find_next_weekday

-- date_of_dow/4: the `ordinal` `wday` of a month, counted from the last
-- day of the previous month. A fifth occurrence that the month does not
-- have lands in the next month (no error: Kazoo's arithmetic just runs on).
local function date_of_dow(year: number, month: number, wday: string, ordinal: string): (number, number, number)
	if month == 1 then
		year, month = year - 1, 13
	end
	local ry, rm = year, month - 1
	local rd = calendar.days_in_month(ry, rm)
	local ref_days = days_of(ry, rm, rd)
	local dow = temporal.wday_to_dow(wday)
	local occurrence = temporal.ordinal_to_position(ordinal)
	local ref_dow = calendar.weekday(ry, rm, rd)
	local days
	if ref_dow == dow then
		days = ref_days + 7 + 7 * occurrence
	elseif dow < ref_dow then
		days = ref_days + dow + (7 - ref_dow) + 7 * occurrence
	else
		days = ref_days + math.abs(dow - ref_dow) + 7 * occurrence
	end
	local y, m, d = calendar.from_days(days)
	return normalize(y, m, d)
end

-- Months past December roll into the following years (find_ordinal_weekday
-- and find_last_weekday take such "improper" months).
local function proper_month(y: number, m: number): (number, number)
	while m > 12 do
		if m == 13 then
			y, m = y + 1, 1
		else
			y, m = y + 1, m - 12
		end
	end
	return y, m
end

-- find_ordinal_weekday/4. Kazoo retries the next month whenever
-- date_of_dow crashes, which only an unknown ordinal does, and then for
-- ever: that endless loop becomes an error here.
function temporal.find_ordinal_weekday(y: number, m: number, wday: string, ordinal: string): (number, number, number)
	y, m = proper_month(y, m)
	if not ORDINALS[ordinal] then
		error(
			string.format("ordinal %q never resolves (Kazoo's find_ordinal_weekday loops for ever)", tostring(ordinal)),
			0
		)
	end
	return date_of_dow(y, m, wday, ordinal)
end
local find_ordinal_weekday = temporal.find_ordinal_weekday

-- find_last_weekday/2: the fifth occurrence if it stays in the month, else
-- the fourth.
function temporal.find_last_weekday(y: number, m: number, wday: string): (number, number, number)
	y, m = proper_month(y, m)
	local fy, fm, fd = date_of_dow(y, m, wday, "fifth")
	if fy == y and fm == m then
		return fy, fm, fd
	end
	return date_of_dow(y, m, wday, "fourth")
end
local find_last_weekday = temporal.find_last_weekday

-- iso_week_difference/2: whole weeks between the ISO weeks of two dates.
function temporal.iso_week_difference(y0, m0, d0, y1, m1, d1): number
	local wy0, w0 = calendar.iso_week(y0, m0, d0)
	local wy1, w1 = calendar.iso_week(y1, m1, d1)
	local ds0 = days_of(calendar.from_iso_week(wy0, w0))
	local ds1 = days_of(calendar.from_iso_week(wy1, w1))
	return trunc_div(math.abs(ds0 - ds1), 7)
end

-- sort_wdays/1: weekdays in week order (a stable sort on the day number;
-- duplicates kept); none means all seven. An unknown name raises.
function temporal.sort_wdays(wdays: { any }): { string }
	if #wdays == 0 then
		return table.clone(DOW_NAMES)
	end
	local keyed = {}
	for index, name in wdays do
		table.insert(keyed, { dow = temporal.wday_to_dow(name), index = index, name = name })
	end
	table.sort(keyed, function(a, b)
		if a.dow ~= b.dow then
			return a.dow < b.dow
		end
		return a.index < b.index
	end)
	local sorted = {}
	for _, entry in keyed do
		table.insert(sorted, entry.name)
	end
	return sorted
end

-- find_active_days/2: the rule's weekday numbers from `dow0` on (master
-- counts today itself: `>=`).
local function find_active_days(wdays: { string }, dow0: number): { number }
	local days = {}
	for _, name in wdays do
		local dow = temporal.wday_to_dow(name)
		if dow >= dow0 then
			table.insert(days, dow)
		end
	end
	return days
end

-- The function_clause Kazoo's next_rule_date/2 ends in when no clause fits.
local function no_clause(rule)
	error(
		string.format(
			"function_clause: next_rule_date for cycle %q (days %d, wdays %d, ordinal %q)",
			rule.cycle,
			#rule.days,
			#rule.wdays,
			rule.ordinal
		),
		0
	)
end

local function single_wday(rule): string?
	if #rule.wdays == 1 then
		return rule.wdays[1]
	end
	return nil
end

local function next_daily(rule, y1, m1, d1)
	local y0, m0, d0 = rule.start[1], rule.start[2], rule.start[3]
	local i0 = rule.interval
	local offset = trunc_div(days_of(y1, m1, d1) - days_of(y0, m0, d0), i0) * i0
	return normalize(y0, m0, d0 + offset + i0)
end

local function next_weekly(rule, y1, m1, d1)
	local y0, m0, d0 = rule.start[1], rule.start[2], rule.start[3]
	local interval = rule.interval
	local dow0 = calendar.weekday(y1, m1, d1)
	local distance = temporal.iso_week_difference(y0, m0, d0, y1, m1, d1)
	local offset = trunc_div(distance, interval) * interval
	local active = find_active_days(rule.wdays, dow0)
	local day = active[1]
	if day and before(y1, m1, d1, y0, m0, d0) and distance == offset then
		-- The start date is later this week: search from it.
		return next_weekly(rule, y0, m0, d0)
	elseif day and y1 == y0 and m1 == m0 and d1 == d0 and day == dow0 and distance == offset then
		return y0, m0, d0
	elseif day and distance == offset then
		return normalize(y1, m1, d1 + day - dow0)
	end
	-- No rule day left this week, or an inactive week: the first rule day of
	-- the next active week.
	local wy0, w0 = calendar.iso_week(y0, m0, d0)
	local y2, m2, d2 = calendar.from_iso_week(wy0, w0 + offset + interval)
	return normalize(y2, m2, (d2 - 1) + temporal.wday_to_dow(rule.wdays[1]))
end

local function next_monthly(rule, y1, m1, d1)
	local y0, m0 = rule.start[1], rule.start[2]
	local i0 = rule.interval
	local distance = (y1 - y0) * 12 - m0 + m1
	local offset = trunc_div(distance, i0) * i0
	if #rule.days > 0 then
		local day
		for _, d in rule.days do
			if d > d1 then
				day = d
				break
			end
		end
		if day and distance == offset then
			local m01 = m0 + offset
			return normalize(y0 + m01 // 12, m01 % 12, day)
		end
		local m01 = m0 + offset + i0
		return normalize(y0 + m01 // 12, m01 % 12, rule.days[1])
	end
	local wday = single_wday(rule)
	if not wday then
		no_clause(rule)
	end
	local active = distance == offset
	if rule.ordinal == "every" then
		if active then
			local y, m, d = find_next_weekday(y1, m1, d1, wday)
			if y == y1 and m == m1 then
				return y, m, d
			elseif i0 == 1 then
				return y, m, d
			end
		end
		return find_ordinal_weekday(y0, m0 + offset + i0, wday, "first")
	elseif rule.ordinal == "last" then
		if active then
			local y, m, d = find_last_weekday(y1, m1, wday)
			if d1 < d then
				return y, m, d
			end
		end
		return find_last_weekday(y0, m0 + offset + i0, wday)
	end
	-- first .. fifth. Kazoo's known bug: a fifth weekday the month does not
	-- have lands in the next month, which the interval > 1 case rejects and
	-- the interval 1 case accepts.
	if active then
		local y, m, d = find_ordinal_weekday(y1, m1, wday, rule.ordinal)
		if m == m1 and d1 < d and i0 > 1 then
			return y, m, d
		elseif i0 == 1 and (d1 < d or m1 < m) then
			return y, m, d
		end
	end
	return find_ordinal_weekday(y0, m0 + offset + i0, wday, rule.ordinal)
end

-- find_next_yearly_ordinal_weekday/5: the ordinal weekday of `month` in the
-- first interval year that has one.
local function next_yearly_ordinal(y0, month, wday, ordinal, interval)
	for _ = 1, 1000 do
		local y, m, d = find_ordinal_weekday(y0, month, wday, ordinal)
		if m == month then
			return y, m, d
		end
		y0 += interval
	end
	error(string.format("no %s %s in month %d (Kazoo searches for ever)", ordinal, wday, month), 0)
end

-- Whether a weekday found in the search year y1 is in the rule's month and
-- still to come: the month is later, or it is this month and the day later.
local function yet_to_come(y, m, d, y1, m1, d1, month): boolean
	return y == y1 and m == month and (m1 < month or (m1 == month and d1 < d))
end

local function next_yearly(rule, y1, m1, d1)
	local y0 = rule.start[1]
	local i0 = rule.interval
	local month = rule.month
	local distance = y1 - y0
	local offset = trunc_div(distance, i0) * i0
	local active = distance == offset
	if #rule.days > 0 then
		-- Not normalized here: an impossible day (30 February) is carried
		-- over by the caller's normalize.
		local first = rule.days[1]
		if not active then
			return y0 + offset + i0, month, first
		elseif m1 < month then
			return y1, month, first
		elseif m1 > month then
			return y0 + offset + i0, month, first
		end
		-- dropwhile(D1 >= D): the first listed day still to come.
		for _, d in rule.days do
			if d1 < d then
				return y1, month, d
			end
		end
		return y0 + offset + i0, month, first
	end
	local wday = single_wday(rule)
	if not wday then
		no_clause(rule)
	end
	if rule.ordinal == "every" then
		if active then
			local y, m, d = find_next_weekday(y1, month, d1, wday)
			if yet_to_come(y, m, d, y1, m1, d1, month) then
				return y, m, d
			end
		end
		return find_ordinal_weekday(y0 + offset + i0, month, wday, "first")
	elseif rule.ordinal == "last" then
		if active then
			local y, m, d = find_last_weekday(y1, month, wday)
			if y == y1 and m1 < month then
				return y, m, d
			elseif y == y1 and m1 == month and d1 < d then
				return y, m, d
			end
		end
		return find_last_weekday(y0 + offset + i0, month, wday)
	end
	if active then
		local y, m, d = find_ordinal_weekday(y1, month, wday, rule.ordinal)
		if yet_to_come(y, m, d, y1, m1, d1, month) then
			return y, m, d
		end
	end
	return next_yearly_ordinal(y0 + offset + i0, month, wday, rule.ordinal, i0)
end

-- next_rule_date/2: the first date the rule occurs on after (weekly: on or
-- after) the search date. `rule` holds cycle, interval, days (integers,
-- in document order), wdays (sorted names), ordinal, month and start (the
-- start date {y, m, d}). The result is not always a proper date (yearly
-- rules give 30 February): normalize it.
function temporal.next_rule_date(rule, y1: number, m1: number, d1: number): (number, number, number)
	local cycle = rule.cycle
	if cycle == "date" then
		return rule.start[1], rule.start[2], rule.start[3]
	elseif cycle == "daily" then
		return next_daily(rule, y1, m1, d1)
	elseif cycle == "weekly" then
		return next_weekly(rule, y1, m1, d1)
	elseif cycle == "monthly" then
		return next_monthly(rule, y1, m1, d1)
	elseif cycle == "yearly" then
		return next_yearly(rule, y1, m1, d1)
	end
	no_clause(rule)
	error("unreachable")
end

-- The day before a date (kz_date:normalize({Y, M, D - 1})).
function temporal.previous_day(y: number, m: number, d: number): (number, number, number)
	return normalize(y, m, d - 1)
end

-- A date as YYYY-MM-DD, a date and seconds of the day as YYYY-MM-DD HH:MM:SS.
function temporal.format_date(y: number, m: number, d: number): string
	return string.format("%04d-%02d-%02d", y, m, d)
end

function temporal.format_seconds(gregorian_seconds: number): string
	local days = gregorian_seconds // 86400
	local rest = gregorian_seconds - days * 86400
	local y, m, d = calendar.from_days(days)
	return string.format(
		"%04d-%02d-%02d %02d:%02d:%02d",
		y,
		m,
		d,
		rest // 3600,
		(rest % 3600) // 60,
		rest % 60
	)
end

return temporal
