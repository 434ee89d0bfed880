-- dynamic_cid: let the caller choose the outbound caller id for this call
-- (Kazoo's cf_dynamic_cid, master).
--
-- Data fields (CODE defaults):
-- * `action` ("manual"): "manual", "static", "list" or "lists". "list" and
--   "lists" need a capture group (the dialled digits after the feature
--   code); without one they, like unknown actions, act as "manual".
-- * manual: `media_id` (prompt, default "dynamic-cid-enter_cid"),
--   `min_digits` (10), `max_digits` (10), `whitelist_regex` ("\\d+",
--   searched unanchored), `interdigit_timeout` (2000 ms). After 100 ms of
--   silence, the prompt plays while digits are collected ("#" ends; 5000 ms
--   for the first digit after the prompt). Digits matching the whitelist
--   and at least min_digits long are accepted (accept tone
--   "tone_stream://%(250,50,440)"); anything else, or nothing, plays
--   "dynamic-cid-invalid_using_default" and keeps the caller's number. The
--   caller-id number is set (the name is kept); continue to "_".
-- * static: `caller_id.name` / `caller_id.number`; a missing number plays
--   the reject prompt and keeps the caller's number, a missing name keeps
--   the caller's name. Sets both; continue to "_".
-- * list / lists: the caller id comes from a list's entries, the capture
--   group being <key><destination>. The list id is `id` (for "lists" the
--   node data's `_id` is preferred, as kz_doc:id reads it). Entries are
--   Kazoo's `lists/entries` view rows for that list, in document-id order:
--   every `list_entries/*.json` document with that `list_id`
--   (`capture_group_key`, `capture_group_length`, `name`, `number`) and the
--   list document's own `entries` object (key -> {cid_name or name,
--   cid_number or number}; its `length` is their capture_group_length;
--   keys in document order, as Kazoo's insertion order). For each entry in
--   turn the capture group is split after capture_group_length (2) digits
--   (a shorter capture group ends the search: "can not be completed as
--   dialed", stop); the first entry whose capture_group_key equals the
--   key gives the name (missing: the caller's) and number (missing: the
--   caller's, with the reject prompt). With `idx_name`, ("list" only) the
--   key is that named capture group and the destination the whole capture
--   group.
--   The caller id is set, then the destination (normalized) is looked up:
--   a `no_match` route is always used, a real callflow only with
--   `permit_custom_callflow` (false); otherwise "disa-invalid_extension" and
--   stop. With `enforce_call_restriction` (true) the calling endpoint's
--   call_restriction for the destination's class (Kazoo's default
--   classifiers; account "deny" wins, then the owner's deny/allow, then the
--   device's) may deny it: answer, "cf-unauthorized_call", hang up.
--   Otherwise branch to the route's callflow (the capture group stays the
--   call's). An empty destination continues to "_" after setting the
--   caller id.
--
-- The chosen caller id is presented on later bridges (call:set_caller_id)
-- and stored in the call variable `dynamic_cid` (Kazoo's kvs: the number,
-- or {number, name} when a name was chosen too).
--
-- Kazoo master's quirks, reproduced:
-- * "list" with `idx_name`: the key check is inverted (get_key_and_dest
--   tests `not is_ne_binary(Key)`), so a key that WAS captured makes the
--   first entry fail: "can not be completed as dialed", stop; a key that
--   was not captured matches entries without capture_group_key, and when
--   none does (or the list is empty) the caller keeps their own caller id
--   (reject prompt) and the whole capture group is the destination.
-- * without `idx_name`, when no entry has the key (or the list has no
--   entries): Kazoo splits the capture group by the list document's
--   `length` (2) and hands a 2-tuple to maybe_proceed_with_call, which
--   crashes (a capture group shorter than that length stops instead, "can
--   not be completed as dialed"); the module raises an error here too, and
--   the call continues with "_", caller id unchanged.
-- Gaps: Kazoo rewrites the request, To and callee number to the
-- normalized destination (for manual and static too, when there is a
-- capture group), so a following `resources` node dials the destination;
-- the API cannot change `call.to` / `call.number`. The caller's own
-- number and name read here are `call.from` / `call.caller_id_name`.
local kazoo = require("kazoo")
local lists = require("lists")

local ACCEPT_TONE = "tone_stream://%(250,50,440)"
local REJECT_PROMPT = "dynamic-cid-invalid_using_default"
local DEFAULT_PROMPT = "dynamic-cid-enter_cid"

-- Kazoo's "non-empty binary" (kz_term:is_ne_binary, get_ne_binary_value):
-- a string that kz_term:is_empty does not discard.
local EMPTY_STRINGS = { [""] = true, ["0"] = true, ["false"] = true, ["NULL"] = true, ["undefined"] = true }

local function ne_binary(value)
	if type(value) == "string" and not EMPTY_STRINGS[value] then
		return value
	end
	return nil
end

local function play_reject(call)
	call:play(REJECT_PROMPT)
end

-- Kazoo's maybe_set_default_cid: fill what is missing from the caller.
local function with_defaults(call, name, number)
	if not number then
		play_reject(call)
		number = call.from
	end
	return name or call.caller_id_name, number
end

local function restriction_action(doc, class)
	if type(doc) ~= "table" or type(doc.call_restriction) ~= "table" then
		return nil
	end
	local rule = doc.call_restriction[class]
	if type(rule) ~= "table" then
		return nil
	end
	return rule.action
end

-- Whether the calling endpoint's call restrictions deny this number.
local function restricted(call, data, number)
	if not kazoo.boolean(data.enforce_call_restriction, true) then
		return false
	end
	local device_id = call.calling_device
	local device = device_id and call:doc("devices", device_id)
	if not device then
		return false
	end
	local owner_id = kazoo.string(device.owner_id)
	local owner = owner_id and call:doc("users", owner_id)
	local class = kazoo.classify(call:normalize(number))
	if not class then
		return false
	end
	local owner_action = restriction_action(owner, class)
	local action
	if restriction_action(call:account(), class) == "deny" or owner_action == "deny" then
		action = "deny"
	elseif owner_action == "allow" then
		action = "allow"
	else
		action = restriction_action(device, class)
	end
	return action == "deny"
end

-- Sets the caller id (name nil: number only) and Kazoo's kvs dynamic_cid.
local function update_caller_id(call, number, name)
	if name then
		call:set("dynamic_cid", { number = number, name = name })
		call:set_caller_id({ name = name, number = number })
	else
		call:set("dynamic_cid", number)
		call:set_caller_id({ number = number })
	end
end

local function handle_manual(call, data)
	call:sleep(100) -- Kazoo plays silence_stream://100 first
	local min = kazoo.integer(data.min_digits, 10)
	local max = kazoo.integer(data.max_digits, 10)
	local whitelist = kazoo.string(data.whitelist_regex, "\\d+")
	local entry = call:collect_digits({
		prompt = kazoo.string(data.media_id, DEFAULT_PROMPT),
		max = max,
		timeout_ms = 5000,
		interdigit_ms = kazoo.integer(data.interdigit_timeout, 2000),
		terminators = "#",
	})
	if entry.reason == "hangup" then
		return call:stop()
	end
	local digits = entry.digits
	local number = call.from
	if digits ~= "" and #digits >= min and re.test(whitelist, digits) then
		call:play(ACCEPT_TONE)
		number = digits
	else
		play_reject(call)
	end
	call:flush_dtmf()
	update_caller_id(call, number, nil)
	return nil
end

local function handle_static(call, data)
	local caller_id = type(data.caller_id) == "table" and data.caller_id or {}
	local name, number = with_defaults(call, ne_binary(caller_id.name), ne_binary(caller_id.number))
	update_caller_id(call, number, name)
	return nil
end

local truthy = lists.truthy

-- Kazoo's lists/entries view for one list: {key, length, name, number}.
local function list_entries(call, list_id)
	local rows = {}
	for _, doc in lists.entries(call, list_id) do
		table.insert(rows, {
			sort = doc.id,
			key = doc.capture_group_key,
			length = doc.capture_group_length,
			name = doc.name,
			number = doc.number,
		})
	end
	local list = call:doc("lists", list_id)
	if list and type(list.entries) == "table" and not truthy(list.pvt_deleted) then
		for _, key in json.keys(list.entries) do
			local entry = list.entries[key]
			if type(entry) == "table" then
				table.insert(rows, {
					sort = list_id,
					key = key,
					length = list.length,
					name = if truthy(entry.cid_name) then entry.cid_name else entry.name,
					number = if truthy(entry.cid_number) then entry.cid_number else entry.number,
				})
			end
		end
	end
	-- CouchDB orders rows of one key by document id (stable for one doc).
	local order = {}
	for i, row in rows do
		order[row] = i
	end
	table.sort(rows, function(a, b)
		if a.sort ~= b.sort then
			return a.sort < b.sort
		end
		return order[a] < order[b]
	end)
	return rows
end

-- The list document's `length` (2 when missing or below 1).
local function list_length(call, list_id)
	local list = call:doc("lists", list_id)
	local length = list and kazoo.integer(list.length, 2) or 2
	if length < 1 then
		return 2
	end
	return length
end

-- The caller id and destination from the list, or nil and the reason
-- ("bad_destination" or "no_entry").
local function from_list(call, list_id, key_dest)
	local captured = call.capture_group or ""
	for _, row in list_entries(call, list_id) do
		local key, destination
		if key_dest then
			if key_dest.key ~= nil then
				return nil, "bad_destination" -- Kazoo's inverted check
			end
			destination = key_dest.destination
		else
			local length = kazoo.integer(row.length, 2)
			if #captured < length then
				return nil, "bad_destination"
			end
			key = string.sub(captured, 1, length)
			destination = string.sub(captured, length + 1)
		end
		if ne_binary(row.key) == key then
			local name, number = with_defaults(call, ne_binary(row.name), ne_binary(row.number))
			return { name = name, number = number, destination = destination }
		end
	end
	-- No entry (left): with idx_name, the caller's own caller id; without,
	-- Kazoo splits the capture group by the list's length and crashes on
	-- the 2-tuple it gets (or stops when the capture group is too short).
	if key_dest then
		local name, number = with_defaults(call, nil, nil)
		return { name = name, number = number, destination = key_dest.destination }
	end
	if #captured < list_length(call, list_id) then
		return nil, "bad_destination"
	end
	return nil, "no_entry"
end

local function route_to_destination(call, data, destination)
	local number = call:normalize(destination)
	local route = call:lookup(number)
	local permit = kazoo.boolean(data.permit_custom_callflow, false)
	if not route or not (route.no_match or permit) then
		if route then
			call:log("info", "dynamic_cid: " .. number .. " has its own callflow and permit_custom_callflow is off")
		else
			call:log("info", "dynamic_cid: no callflow for " .. number)
		end
		call:play("disa-invalid_extension")
		return call:stop()
	end
	if restricted(call, data, number) then
		call:log("info", "dynamic_cid: call restrictions deny " .. number)
		call:answer()
		call:play("cf-unauthorized_call")
		call:hangup()
		return call:stop()
	end
	local directive, err = call:branch(route.callflow_id)
	if not directive then
		call:log("warning", "dynamic_cid: " .. tostring(err))
		return call:stop()
	end
	return directive
end

local function handle_list(call, data, action)
	local list_id, key_dest
	if action == "lists" then
		list_id = kazoo.string(data._id) or kazoo.string(data.id)
	else
		list_id = kazoo.string(data.id)
		local idx = kazoo.string(data.idx_name)
		if idx then
			key_dest = {
				key = ne_binary((call.capture_groups or {})[idx]),
				destination = call.capture_group,
			}
		end
	end
	local cid, reason
	if list_id then
		cid, reason = from_list(call, list_id, key_dest)
	else
		call:log("warning", "dynamic_cid: list id is missing")
		reason = "bad_destination"
	end
	if not cid then
		if reason == "no_entry" then
			error("dynamic_cid: no entry of list " .. tostring(list_id) .. " has the dialled key", 0)
		end
		call:play("fault-can_not_be_completed_as_dialed")
		return call:stop()
	end
	update_caller_id(call, cid.number, cid.name)
	if kazoo.string(cid.destination) == nil then
		return nil
	end
	return route_to_destination(call, data, cid.destination)
end

return {
	description = "Set the outbound caller id (entered, static or from a list), then dial the rest of the number.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "list", "lists", "manual", "static" } },
			caller_id = {
				type = "object",
				properties = { name = { type = "string" }, number = { type = "string" } },
			},
			enforce_call_restriction = { type = "boolean", default = true },
			id = { type = "string", description = "list document id (list, lists)" },
			idx_name = { type = "string", description = "named capture group holding the list key" },
			interdigit_timeout = { type = "integer" },
			max_digits = { type = "integer" },
			media_id = { type = "string" },
			min_digits = { type = "integer" },
			permit_custom_callflow = { type = "boolean", default = false },
			whitelist_regex = { type = "string" },
		},
	},
	handle = function(call, data)
		local action = kazoo.string(data.action)
		local captured = kazoo.string(call.capture_group)
		if (action == "list" or action == "lists") and captured then
			return handle_list(call, data, action)
		elseif action == "static" then
			return handle_static(call, data)
		end
		return handle_manual(call, data)
	end,
}
