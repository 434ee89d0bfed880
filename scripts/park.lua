-- park: park calls in numbered slots and retrieve them (Kazoo's cf_park).
--
-- Data (CODE defaults):
-- * `action` ("park"): "park", "direct_park", "retrieve" or "auto".
-- * `slot`: the slot number; default the capture group, else the first free
--   slot after 100 (Kazoo's rule: sort the occupied slot numbers with 100,
--   walk them while each is the previous plus one, take the next number).
-- * `slots` ({}): per-slot settings: `ringback_timeout` (ms on hold before
--   ringing the parker back), `callback_timeout` (ms the parker's phone
--   rings), `presence_type`, `presence_id` (with `custom_presence_id`).
-- * `default_ringback_timeout` (120000), `default_callback_timeout` (30000),
--   `default_presence_type` ("early"), `max_slot_number` (none),
--   `custom_presence_id` (false), `presence_id`.
--
-- State: the account's slots live in the document `parked_calls`/`slots`
-- ({"slots": {"<n>": slot}}, slot fields as Kazoo's: Call-ID,
-- Parker-Call-ID, Attended, Ringback-ID, CID-Name, CID-Number,
-- Presence-ID, Presence-Type, Hold-Media), read with call:doc and written
-- with call:update_doc (atomic), so parked calls outlive the call. A slot with a
-- Call-ID that is not its Parker-Call-ID is occupied.
--
-- Actions and exits:
-- * park (the caller is the parker, completing an attended transfer into
--   the slot): the slot is reserved (Attended) for this call; answers, plays
--   "park-call_placed_in_spot", says the slot number, waits up to 30 s for
--   the parker's phone to complete the transfer (hang up), then ends with a
--   transfer directive ("park:<n>"). Occupied slot: plays
--   "park-already_in_use" and stops.
-- * direct_park (the caller is parked): the slot is saved, `park.parked`
--   and `park.presence` are emitted and the caller is held. With a parker
--   device (here: `call.calling_device`) the hold lasts the slot's
--   ringback timeout, then the parker's device is rung back for the
--   callback timeout (`park.ringback`): answered -> the slot is freed, the
--   two talk, then "_"; not answered -> the child keyed by the slot number
--   (Kazoo's cf_exe:next: that key, else "_") when the node has either, else
--   the caller is held again (re-park). Without a parker device the hold
--   lasts until the caller hangs up. A hang-up while held frees the slot
--   (`park.abandoned`) and stops. Occupied slot: stops.
-- * retrieve: an occupied slot -> the slot is freed, `park.retrieved` is
--   emitted and the call is connected to the parked call: a transfer
--   directive to its Call-ID (a reserved, Attended slot is retried twice,
--   1 s apart, first, as Kazoo waits for the transfer to complete). Empty
--   slot: answers, plays "park-no_caller" and stops.
-- * auto: retrieve when the slot is occupied, else park (as "park", with
--   this call as the parker).
-- * A slot number above `max_slot_number` -> the child "MAX_SLOT_EXCEEDED"
--   (falling back to "_").
--
-- Across calls: the parked caller waits in the slot with call:park, and a
-- retrieve from another call of a multi-call scenario joins it
-- (call:pickup): the two talk until one hangs up, the parked call's flow
-- stops there.
--
-- Deviations:
-- * A parked call that is not in the world (a slot already in the
--   document, e.g. flows/<account>/parked_calls/slots.json) is taken to be
--   up (Kazoo asks the switch), so it is occupied, and a retrieve connects
--   by a transfer to its call id (Kazoo's pickup could fail or time out).
-- * The parker to ring back is the calling device (Kazoo: the device in the
--   call's Referred-By header). Blind and attended transfers into park
--   (the Referred-To / Replaces headers) are not modelled: the API has no
--   SIP transfer headers; "park" always behaves as a direct dial.
-- * The "park" reservation is kept after the call (Kazoo removes it 3 s
--   later when no transfer replaced it; here the transfer is assumed done).
-- * Kazoo returns only direct_park to "MAX_SLOT_EXCEEDED" (park and auto
--   announce the slot without saving it, an upstream slip); here every
--   parking action does.
-- * The ringback's caller id ("Parking slot <n> - <name>") is shown in the
--   `park.ringback` event, not applied to the bridge; the hold music is the
--   `park` wait of the hold (its media, the parker device's music on hold,
--   in the `park.parked` event).
-- * `call:bridge` returns when the conversation ends, so after an answered
--   ringback the slot is freed then (Kazoo frees it on answer).
-- * A retrieve after the two retries frees the slot and emits
--   `park.retrieved` like any other (Kazoo's retry path does neither).
local kazoo = require("kazoo")

local DOC_TYPE, DOC_ID = "parked_calls", "slots"

-- The slots of a slots document as a mutable copy: {[n] = slot}.
local function slots_of(doc)
	local slots = {}
	if doc and type(doc.slots) == "table" then
		for number, slot in doc.slots do
			local copy = {}
			for key, value in slot do
				copy[key] = value
			end
			slots[tostring(number)] = copy
		end
	end
	return slots
end

-- The slots document as this call sees it.
local function load_slots(call)
	return slots_of(call:doc(DOC_TYPE, DOC_ID))
end

-- Changes the slots atomically (call:update_doc: a slot another call took
-- meanwhile is seen, `change` then runs again on the slots as they are
-- now); `change(slots)` returning false leaves them unchanged.
local function update_slots(call, change: ({ [string]: any }) -> boolean?)
	call:update_doc(DOC_TYPE, DOC_ID, function(doc)
		local slots = slots_of(doc)
		if change(slots) == false then
			return nil
		end
		return { slots = slots }
	end)
end

-- Kazoo's find_slot_number over the occupied slot numbers.
local function next_free_slot(slots)
	local numbers, seen = { 100 }, { [100] = true }
	for key in slots do
		local n = tonumber(key)
		if n and not seen[n] then
			seen[n] = true
			table.insert(numbers, n)
		end
	end
	table.sort(numbers)
	for i = 1, #numbers - 1 do
		if numbers[i + 1] ~= numbers[i] + 1 then
			return tostring(numbers[i] + 1)
		end
	end
	return tostring(numbers[#numbers] + 1)
end

local function text_of(value)
	if type(value) == "number" then
		return tostring(math.floor(value))
	end
	return kazoo.string(value)
end

local function slot_config(data, number)
	local slots = type(data.slots) == "table" and data.slots or {}
	local config = slots[number]
	return type(config) == "table" and config or {}
end

local function realm(call)
	return kazoo.string(call:account().realm, call.account_id)
end

local function presence_user(call, data, number)
	if kazoo.boolean(data.custom_presence_id, false) then
		return kazoo.string(slot_config(data, number).presence_id)
			or kazoo.string(data.presence_id)
			or call.to
	end
	if kazoo.string(call.capture_group) then
		return call.to
	end
	return call.to .. number
end

local function presence_type(data, number)
	return kazoo.string(slot_config(data, number).presence_type)
		or kazoo.string(data.default_presence_type, "early")
end

local function hold_media(call, device)
	local doc = device and call:doc("devices", device)
	local moh = doc and doc.music_on_hold
	return type(moh) == "table" and kazoo.string(moh.media_id) or nil
end

-- Kazoo's create_slot.
local function new_slot(call, data, number, parker_call_id, attended)
	local cid = call:caller_id()
	local user, domain = presence_user(call, data, number), realm(call)
	local ringback = call.calling_device
	return {
		["Call-ID"] = call.call_id,
		["Attended"] = attended,
		["Parker-Call-ID"] = parker_call_id,
		["Ringback-ID"] = ringback,
		["Presence-User"] = user,
		["Presence-Realm"] = domain,
		["Presence-ID"] = user .. "@" .. domain,
		["CID-Number"] = cid.number,
		["CID-Name"] = cid.name,
		["Hold-Media"] = hold_media(call, ringback),
		["Presence-Type"] = presence_type(data, number),
	}
end

local function parked_call_id(slot)
	return slot and kazoo.string(slot["Call-ID"]) or nil
end

-- Kazoo's save_slot: "max_slot_exceeded", "occupied" or nil (saved).
local function save_slot(call, data, slots, number, slot)
	local max = kazoo.integer(data.max_slot_number)
	local n = tonumber(number)
	if max and n and n > max then
		call:log("info", string.format("park: no more slots available, max_slot_number (%d) exceeded", max))
		return "max_slot_exceeded"
	end
	-- The slot is checked again on the slots as stored now.
	local occupant = nil
	update_slots(call, function(now)
		local current = now[number]
		local parked = parked_call_id(current)
		if parked and parked ~= kazoo.string(current["Parker-Call-ID"]) then
			occupant = parked
			return false
		end
		occupant = nil
		now[number] = slot
		return true
	end)
	if occupant then
		call:log("info", "park: slot " .. number .. " has active call " .. occupant)
		return "occupied"
	end
	return nil
end

local function presence(call, slot, state)
	call:emit({ event = "park.presence", presence_id = slot["Presence-ID"], state = state })
end

-- Kazoo's cleanup_slot: frees the slot if `call_id` still holds it.
local function cleanup_slot(call, number, call_id)
	local freed = nil
	update_slots(call, function(slots)
		local slot = slots[number]
		if slot and parked_call_id(slot) == call_id then
			freed = slot
			slots[number] = nil
			return true
		end
		freed = nil
		return false
	end)
	if freed then
		presence(call, freed, "terminated")
	end
end

-- Kazoo's publish_event (PARK_PARKED, PARK_RETRIEVED, PARK_ABANDONED);
-- `extra` adds fields (the hold music of a parked call).
local function publish(call, name, number, extra)
	local cid = call:caller_id()
	local event = {
		event = "park." .. name,
		slot = number,
		call_id = call.call_id,
		caller_id_name = cid.name,
		caller_id_number = cid.number,
	}
	for key, value in extra or {} do
		event[key] = value
	end
	call:emit(event)
end

-- Kazoo's park_call for a direct dial (no Referred-To): the caller is the
-- parker; announce the slot and wait for the phone to complete the transfer.
local function park_call(call, data, slots, number, slot)
	local err = save_slot(call, data, slots, number, slot)
	if err == "max_slot_exceeded" then
		return "MAX_SLOT_EXCEEDED"
	elseif err == "occupied" then
		call:answer()
		call:play("park-already_in_use")
		return call:stop()
	end
	call:answer()
	call:play("park-call_placed_in_spot")
	call:say(number, { type = "name_spelled", method = "pronounced" })
	local waited = call:sleep(30000)
	if waited.reason == "hangup" then
		return call:stop()
	end
	return call:transfer("park:" .. number)
end

-- Kazoo's retrieve: the parked call's id, or nil when the slot is empty.
local function retrieve(call, number)
	local slot = load_slots(call)[number]
	local tries = 1
	while slot and slot["Attended"] == true and tries < 3 do
		call:log("info", "park: slot " .. number .. " has a pending attended park, retrying in 1 s")
		call:sleep(1000)
		tries += 1
		slot = load_slots(call)[number]
	end
	local parked = parked_call_id(slot)
	if parked == nil then
		call:log("info", "park: slot " .. number .. " is empty, unable to retrieve caller")
		return nil
	end
	call:emit({
		event = "park.retrieved",
		slot = number,
		call_id = call.call_id,
		parked_call_id = parked,
		parked_caller_id_name = slot["CID-Name"],
		parked_caller_id_number = slot["CID-Number"],
	})
	cleanup_slot(call, number, parked)
	return parked
end

-- Connects the retriever to the parked call: when that call waits in the
-- slot here (another call of a multi-call scenario), they talk until one
-- hangs up (call:pickup); a call only the slots document knows of is
-- reached by a transfer to its call id.
local function connect(call, parked)
	for _, channel in call:channels() do
		if channel.call_id == parked and channel.state == "parked" then
			call:answer()
			call:pickup(parked)
			return call:stop()
		end
	end
	return call:transfer(parked)
end

local function node_has_key(call, key)
	for _, child in call:children() do
		if child == key then
			return true
		end
	end
	return false
end

-- Kazoo's ringback_parker: "answered", "failed" or "channel_hungup".
local function ringback_parker(call, data, number, slot)
	local device = slot["Ringback-ID"]
	if not device then
		return "failed"
	end
	local config = slot_config(data, number)
	local timeout_ms = kazoo.integer(config.callback_timeout, kazoo.integer(data.default_callback_timeout, 30000))
	call:emit({
		event = "park.ringback",
		slot = number,
		device = device,
		caller_id_name = "Parking slot " .. number .. " - " .. tostring(slot["CID-Name"] or ""),
		timeout_ms = timeout_ms,
	})
	local r = call:bridge({ device }, { timeout_s = math.max(1, math.ceil(timeout_ms / 1000)) })
	if r.status == "answered" then
		return "answered"
	elseif r.status == "hangup" then
		return "channel_hungup"
	end
	return "failed"
end

-- Kazoo's parked_call + wait_for_pickup: the caller is held in the slot.
local function hold_in_slot(call, data, number, slot)
	publish(call, "parked", number, { hold_media = slot["Hold-Media"] })
	presence(call, slot, slot["Presence-Type"] or "early")
	while true do
		-- Held in the slot (call:park): another call may retrieve it.
		local waited
		if slot["Ringback-ID"] then
			local config = slot_config(data, number)
			waited = call:park(number, {
				timeout_ms = kazoo.integer(config.ringback_timeout, kazoo.integer(data.default_ringback_timeout, 120000)),
			})
		else
			waited = call:park(number)
		end
		if waited.reason == "retrieved" then
			-- The retriever freed the slot; the two talked until one hung up.
			return call:stop()
		end
		if waited.reason == "hangup" then
			publish(call, "abandoned", number)
			cleanup_slot(call, number, call.call_id)
			return call:stop()
		end
		local result = ringback_parker(call, data, number, slot)
		if result == "answered" then
			cleanup_slot(call, number, call.call_id)
			publish(call, "retrieved", number)
			return nil
		elseif result == "channel_hungup" then
			cleanup_slot(call, number, call.call_id)
			return call:stop()
		end
		-- Not answered: the slot's child (or "_") if any, else re-park.
		if node_has_key(call, number) or node_has_key(call, "_") then
			publish(call, "abandoned", number)
			cleanup_slot(call, number, call.call_id)
			return number
		end
		call:log("info", "park: ringback not answered, parking again in slot " .. number)
	end
end

return {
	description = "Park calls in numbered slots and retrieve them.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "direct_park", "park", "retrieve", "auto" }, default = "park" },
			custom_presence_id = { type = "boolean", default = false },
			default_callback_timeout = { type = "integer" },
			default_presence_type = { type = "string", enum = { "early", "terminated", "confirmed" } },
			default_ringback_timeout = { type = "integer" },
			max_slot_number = { type = "integer" },
			presence_id = { type = "string" },
			slot = { type = "string" },
			slots = { type = "object", default = {} },
		},
	},
	handle = function(call, data)
		local slots = load_slots(call)
		local number = text_of(data.slot)
			or kazoo.string(call.capture_group)
			or next_free_slot(slots)
		local action = kazoo.string(data.action, "park")
		if action == "direct_park" then
			local slot = new_slot(call, data, number, call.call_id, false)
			local err = save_slot(call, data, slots, number, slot)
			if err == "max_slot_exceeded" then
				return "MAX_SLOT_EXCEEDED"
			elseif err then
				call:log("info", "park: unable to save direct park slot: " .. err)
				return call:stop()
			end
			return hold_in_slot(call, data, number, slot)
		elseif action == "park" then
			return park_call(call, data, slots, number, new_slot(call, data, number, nil, true))
		elseif action == "retrieve" then
			local parked = retrieve(call, number)
			if parked then
				return connect(call, parked)
			end
			call:answer()
			call:play("park-no_caller")
			return call:stop()
		elseif action == "auto" then
			local parked = retrieve(call, number)
			if parked then
				return connect(call, parked)
			end
			return park_call(call, data, load_slots(call), number, new_slot(call, data, number, call.call_id, true))
		end
		call:log("warning", "park: unknown action " .. action)
	end,
}
