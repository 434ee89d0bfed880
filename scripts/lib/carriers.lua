-- Carrier (off-net) calls for the resources and offnet modules: what Kazoo's
-- cf_resources puts in its offnet request to stepswitch, the bridge to the
-- carriers, and the failure handling (cf_util:handle_bridge_failure and
-- cf_util:send_default_response).
--
-- * The number dialled (To-DID): `to_did` when set; else, with
--   `do_not_normalize`, the number as dialled; else the calling device's
--   `dial_plan` applied to the number as dialled, when the device has one;
--   else the number as dialled with `bypass_e164`, or as routing normalized
--   it. Stepswitch then normalizes it (E.164) unless `bypass_e164` or
--   `do_not_normalize`.
-- * The caller id (kz_attributes:caller_id/2 for `caller_id_type`, default
--   "external"): calls from carriers keep theirs; on-net calls from a device
--   present `caller_id.<type>` of the device, its owner and the account
--   (the owner first, the device first with the account's
--   `prefer_device_caller_id`), with prepend_cid prefixes; a set_cid
--   rewrite wins over both. Our bridges present the call's caller id, so
--   that caller id is set as a rewrite for the bridge and removed after it.
-- * The request is traced as an `offnet_req` event: to_did, resources
--   ("local" or "global"), hunt_account_id, the caller id, ringback, flags
--   (`outbound_flags` of the node, the device, its owner and the account)
--   and custom SIP headers (with X-Account-ID for `emit_account_id`).
--   Simulations pick no carrier by flags or hunt account: the scenario's
--   endpoint for the number (else "offnet") is the carrier.
--
-- A device dial plan's rules are tried in document order (json.keys), as
-- Kazoo does. Deviations: its "system" dial plans are not available;
-- `dynamic_flags`, emergency caller ids, hot-desked owners,
-- `ignore_early_media`, `format_from_uri`/`from_uri_realm` and
-- `Retain-CID`/call-forward caller ids are not modelled. Without `timeout`
-- stepswitch sets none and the switch's originate timeout applies: 60 s
-- here (FreeSWITCH's default; not verified). On TRANSFER Kazoo just ends
-- the executor (the transfer has happened); call:transfer needs a target, so
-- the dialled number is given. A default response plays its media before
-- sending the SIP response, as the response module does (Kazoo queues the
-- respond first; a final response would end our call before the media).
local kazoo = require("kazoo")

local carriers = {}

-- How long carriers ring without a `timeout` (FreeSWITCH's default
-- originate timeout).
carriers.DEFAULT_TIMEOUT_S = 60

-- Kazoo's default call responses (kz_call_response:default_response/1):
-- cause -> {code, message, media}; causes not listed have none.
local TONE_BUSY = "tone_stream://%(500,500,480,620);loops=25"
local TONE_FAST = "tone_stream://%(250,250,480,620);loops=25"
local DEFAULT_RESPONSES = {
	UNALLOCATED_NUMBER = { 404, "No route to destination", "fault-can_not_be_completed_as_dialed" },
	NO_ROUTE_TRANSIT_NET = { 404, "Invalid number" },
	NO_ROUTE_DESTINATION = { 404, "No route to destination", "fault-can_not_be_completed_as_dialed" },
	NORMAL_CLEARING = { nil, nil, TONE_BUSY },
	USER_BUSY = { 486, "Number busy", TONE_BUSY },
	NO_USER_RESPONSE = { 408, "No response", TONE_FAST },
	NO_ANSWER = { 480, "No answer" },
	SUBSCRIBER_ABSENT = { 480, "Subscriber absent" },
	CALL_REJECTED = { 603, "Call Rejected", TONE_FAST },
	NUMBER_CHANGED = { 410, "Number changed" },
	REDIRECTION_TO_NEW_DESTINATION = { 410, "Redirection to new destination" },
	EXCHANGE_ROUTING_ERROR = { 483, "Exchange routing error", "fault-facility_trouble" },
	DESTINATION_OUT_OF_ORDER = { 502, "Destination out of order", "fault-can_not_be_completed_as_dialed" },
	INVALID_NUMBER_FORMAT = { 484, "Invalid number format", "fault-can_not_be_completed_as_dialed" },
	FACILITY_REJECTED = { 510, "Facility rejected" },
	NORMAL_UNSPECIFIED = { 480, "Normal unspecified" },
	NORMAL_CIRCUIT_CONGESTION = { 503, "Normal circuit congestion" },
	NETWORK_OUT_OF_ORDER = { 503, "Network out of order" },
	NORMAL_TEMPORARY_FAILURE = { 503, "Normal temporary failure", "fault-can_not_be_completed_at_this_time" },
	SWITCH_CONGESTION = { 503, "Switch congestion" },
	REQUESTED_CHAN_UNAVAIL = { 503, "Requested channel unavailable" },
	OUTGOING_CALL_BARRED = { 403, "Outgoing call barred" },
	INCOMING_CALL_BARRED = { 403, "Incoming call barred" },
	BEARERCAPABILITY_NOTAUTH = { 403, "Bearer capability not authorized" },
	BEARERCAPABILITY_NOTAVAIL = { 403, "Bearer capability not presently available" },
	BEARERCAPABILITY_NOTIMPL = { 488, "Bearer capability not implemented" },
	UNKNOWN = { 500, "Unknown error happened" },
	FACILITY_NOT_IMPLEMENTED = { 501, "Facility not implemented" },
	SERVICE_NOT_IMPLEMENTED = { 501, "Service not implemented", "fault-facility_trouble" },
	INCOMPATIBLE_DESTINATION = { 488, "Incompatible destination", "fault-facility_trouble" },
	MANDATORY_IE_MISSING = { 400, "Mandatory information missing", "fault-facility_trouble" },
	RECOVERY_ON_TIMER_EXPIRE = { 504, "Recovery on timer expire", TONE_FAST },
	MANDATORY_IE_LENGTH_ERROR = { 400, "Mandatory information missing", "fault-facility_trouble" },
	ORIGINATOR_CANCEL = { 487, "Originator cancel" },
	MEDIA_TIMEOUT = { 504, "Media timeout", TONE_FAST },
	PROGRESS_TIMEOUT = { 486, "Progress timeout", "fault-can_not_be_completed_at_this_time" },
}

-- The node schema shared by resources and offnet (Appendix A).
function carriers.schema()
	return {
		type = "object",
		properties = {
			to_did = { type = "string" },
			use_local_resources = { type = "boolean", default = true },
			hunt_account_id = { type = "string" },
			outbound_flags = { type = "array", items = { type = "string" }, default = {} },
			dynamic_flags = { type = "array", items = { type = "string" } },
			caller_id_type = { type = "string", default = "external" },
			bypass_e164 = { type = "boolean" },
			do_not_normalize = { type = "boolean" },
			emit_account_id = { type = "boolean" },
			format_from_uri = { type = "boolean" },
			from_uri_realm = { type = "string" },
			ignore_early_media = { type = "boolean", default = false },
			ringback = { type = "string" },
			timeout = { type = "integer" },
			custom_sip_headers = { type = "object" },
			resource_type = { type = "string" },
		},
	}
end

-- A device's dial plan ({"<regex>": {prefix, suffix, regex?}}) applied to
-- `number` as cf_util:apply_dialplan/2 does: each matching rule rewrites the
-- number to prefix .. last capture .. suffix and the next rules see the
-- result; a rule matching without captures ends it unchanged.
local function apply_dial_plan(number: string, plan: { [string]: any }): string
	for _, key in json.keys(plan) do
		local rule = plan[key]
		if key ~= "system" and type(rule) == "table" then
			local regex = kazoo.string(rule.regex, key)
			local ok, m = pcall(re.match, regex, number)
			if ok and m then
				if #m.groups == 0 then
					return number
				end
				local root = m.groups[#m.groups]
				number = (kazoo.string(rule.prefix, "") :: string) .. root .. (kazoo.string(rule.suffix, "") :: string)
			end
		end
	end
	return number
end

-- The calling device, its owner and the account (Kazoo's kz_endpoint:get/1).
local function endpoint(call)
	local device = call.calling_device and call:doc("devices", call.calling_device)
	if not device then
		return nil
	end
	local owner = kazoo.string(device.owner_id) and call:doc("users", device.owner_id)
	return { device = device, owner = owner, account = call:account() }
end

-- The number the carriers are asked for (To-DID), after stepswitch's
-- normalization.
function carriers.to_did(call, data): string
	local bypass = kazoo.boolean(data.bypass_e164, false)
	local raw = kazoo.boolean(data.do_not_normalize, false)
	local number = kazoo.string(data.to_did)
	if not number then
		local ep = endpoint(call)
		local plan = ep and ep.device.dial_plan
		if raw then
			number = call.to
		elseif type(plan) == "table" and next(plan) ~= nil then
			number = apply_dial_plan(call.to, plan)
		elseif bypass then
			number = call.to
		else
			number = call.number
		end
	end
	if bypass or raw then
		return number
	end
	return call:normalize(number)
end

-- `caller_id.<cid_type>.<field>` from the first document that has it.
local function cid_field(docs, cid_type: string, field: string): string?
	for _, doc in docs do
		local cid = doc and doc.caller_id
		if type(cid) == "table" then
			local types = if cid_type == "emergency" then { "emergency", "external" } else { cid_type }
			for _, t in types do
				local value = type(cid[t]) == "table" and kazoo.string(cid[t][field])
				if value then
					return value
				end
			end
		end
	end
	return nil
end

-- The caller id the carriers see for `cid_type`: returns name, number.
function carriers.caller_id(call, cid_type: string): (string, string)
	local cur = call:caller_id()
	local ep = call.inception ~= "offnet" and endpoint(call)
	if not ep then
		-- Calls from carriers keep their caller id; without an endpoint,
		-- the call's own caller id is used.
		return cur.name, cur.number
	end
	local order = { ep.owner, ep.device }
	if kazoo.boolean(ep.account.prefer_device_caller_id, false) then
		order = { ep.device, ep.owner }
	end
	local docs = {}
	for i = 1, 2 do
		if order[i] then
			table.insert(docs, order[i])
		end
	end
	table.insert(docs, ep.account)
	local name = cid_field(docs, cid_type, "name")
	if not name and cid_type == "internal" and ep.owner then
		local first, last = kazoo.string(ep.owner.first_name), kazoo.string(ep.owner.last_name)
		if first and last then
			name = first .. " " .. last
		else
			name = first or last
		end
	end
	local number = cid_field(docs, cid_type, "number")
	-- A set_cid rewrite wins; otherwise prefixes go in front of the
	-- endpoint's caller id (or the call's own).
	local rewritten_name = cur.name ~= cur.prefix_name .. cur.original_name
	local rewritten_number = cur.number ~= cur.prefix_number .. cur.original_number
	local final_name = if rewritten_name then cur.name else cur.prefix_name .. (name or cur.original_name)
	local final_number = if rewritten_number then cur.number else cur.prefix_number .. (number or cur.original_number)
	return final_name, final_number
end

-- Flags for carrier selection: the node's, the device's, the account's.
local function flags(call, data): { string }
	local list = {}
	local function add(values)
		if type(values) == "table" then
			for _, flag in values do
				if type(flag) == "string" and flag ~= "" then
					table.insert(list, flag)
				end
			end
		end
	end
	add(data.outbound_flags)
	local ep = endpoint(call)
	if ep then
		add(ep.device.outbound_flags)
		add(ep.owner and ep.owner.outbound_flags)
	end
	add(call:account().outbound_flags)
	return list
end

-- Plays Kazoo's default response for `cause` (when the node has no "_"),
-- then stops with that cause.
local function fail(call, cause: string)
	local response = DEFAULT_RESPONSES[cause]
	if response and not call:has_child("_") then
		local code, message, media = response[1], response[2], response[3]
		if media then
			call:play(media, { terminators = {} })
		end
		if code then
			call:respond(code, message)
		end
	end
	return call:stop(cause)
end

-- Sends the call to the carriers (local ones when `use_local`) and returns
-- where it goes next: stop when answered, a transfer on TRANSFER, the
-- failure child (cause name, then "sip:<code>"), else the default response
-- and a stop with the cause. The "_" child is never taken.
function carriers.dial(call, data, use_local: boolean)
	local to_did = carriers.to_did(call, data)
	local cid_type = kazoo.string(data.caller_id_type, "external") :: string
	local name, number = carriers.caller_id(call, cid_type)
	local request: { [string]: any } = {
		event = "offnet_req",
		to_did = to_did,
		resources = if use_local then "local" else "global",
		caller_id_name = name,
		caller_id_number = number,
	}
	if use_local then
		request.hunt_account_id = kazoo.string(data.hunt_account_id, call.account_id)
	end
	local ringback = kazoo.string(data.ringback)
	if ringback then
		request.ringback = ringback
	end
	local list = flags(call, data)
	if #list > 0 then
		request.flags = list
	end
	local headers = {}
	if type(data.custom_sip_headers) == "table" then
		for key, value in data.custom_sip_headers do
			headers[key] = value
		end
	end
	if kazoo.boolean(data.emit_account_id, false) then
		headers["X-Account-ID"] = call.account_id
	end
	if next(headers) ~= nil then
		request.custom_sip_headers = headers
	end
	call:emit(request)

	-- Present that caller id on this bridge only.
	local cur = call:caller_id()
	local changes, restore = {}, {}
	if name ~= cur.name then
		changes.name, restore.name = name, ""
	end
	if number ~= cur.number then
		changes.number, restore.number = number, ""
	end
	if next(changes) ~= nil then
		call:set_caller_id(changes)
	end
	local r = call:bridge({ { number = to_did } }, {
		timeout_s = kazoo.integer(data.timeout, carriers.DEFAULT_TIMEOUT_S),
		ringback = ringback,
		carriers = {
			resources = request.resources,
			hunt_account_id = request.hunt_account_id,
			flags = list,
		},
	})
	if r.status == "answered" or r.status == "hangup" then
		-- The call is over (a bridge lasts until a side hangs up).
		return call:stop()
	end
	if next(restore) ~= nil then
		call:set_caller_id(restore)
	end
	if r.cause == "TRANSFER" then
		-- Stepswitch reports the carrier leg transferred the call away.
		return call:transfer(to_did)
	end
	local cause = if r.cause ~= "" then r.cause else "UNSPECIFIED"
	if call:has_child(cause) then
		return cause
	end
	local code = "sip:" .. tostring(if r.sip ~= 0 then r.sip else 600)
	if call:has_child(code) then
		return code
	end
	return fail(call, cause)
end

return carriers
