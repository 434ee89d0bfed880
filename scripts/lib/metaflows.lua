-- Helpers of the metaflow modules (scripts/metaflows/): which leg pressed
-- the code, legs named relative to it, and what to ring for a number.
local kazoo = require("kazoo")
local endpoints = require("endpoints")

local metaflows = {}

-- "a" when the caller's leg pressed the code (data.dtmf_leg is the call's
-- own id), else "b" (the bridged peer).
function metaflows.pressed(call, data): string
	if data.dtmf_leg == nil or data.dtmf_leg == call.call_id then
		return "a"
	end
	return "b"
end

function metaflows.other(leg: string): string
	return if leg == "a" then "b" else "a"
end

-- Konami's `leg` values ("self", "peer", "both") as call legs for the leg
-- that pressed; "both" without a bridge is the caller's leg alone.
function metaflows.legs(call, relative: string?, pressed: string): string?
	local leg
	if relative == "self" then
		leg = pressed
	elseif relative == "peer" then
		leg = metaflows.other(pressed)
	else
		leg = "both"
	end
	if call:peer() == nil then
		return if leg == "b" then nil else "a"
	end
	return leg
end

-- The device of a leg: the calling device, or the device that answered.
function metaflows.device_of(call, leg: string): string?
	if leg == "a" then
		return call.calling_device
	end
	local peer = call:peer()
	return peer and peer.endpoint
end

-- What to ring for a number: the devices of the callflow it routes to
-- when that callflow starts with a `device` or `user` node, else the number
-- itself (an off-net endpoint, which scenarios describe under the number).
function metaflows.target_endpoints(call, number: string)
	local route = call:lookup(number, { normalize = true })
	local doc = route and not route.no_match and call:doc("callflows", route.callflow_id)
	local flow = doc and doc.flow
	if type(flow) == "table" and type(flow.data) == "table" then
		local id = kazoo.string(flow.data.id)
		if flow.module == "device" and id then
			return { id }
		elseif flow.module == "user" and id then
			local devices = endpoints.owned_devices(call, id)
			if #devices > 0 then
				return devices
			end
		end
	end
	return { { number = number } }
end

-- The music on hold: `media`, else the account's, else "default_moh".
function metaflows.moh(call, media: string?): string
	if kazoo.string(media) then
		return media :: string
	end
	local moh = call:account().music_on_hold
	return type(moh) == "table" and kazoo.string(moh.media_id) or "default_moh"
end

-- The data of Kazoo's hold metaflow (`metaflows.hold`), which the callflow
-- module `hold` takes too.
metaflows.HOLD_SCHEMA = {
	type = "object",
	properties = {
		moh_aleg = { type = "string" },
		moh_bleg = { type = "string" },
		unhold_key = { type = "string", default = "1" },
	},
}

-- The first non-empty capture, else `fallback`.
function metaflows.capture(data, fallback: string?): string?
	if type(data.captures) == "table" then
		local first = kazoo.string(data.captures[1])
		if first then
			return first
		end
	end
	return fallback
end

return metaflows
