-- hold: put the call on hold with music until the unhold key is pressed
-- (Kazoo has no callflow module for this: it is the konami metaflow `hold`,
-- whose data this module takes; konami sends FreeSWITCH's soft_hold).
--
-- Data (CODE defaults):
-- * `moh_aleg`: the music for the leg that asked for the hold (absent: the
--   calling device's `music_on_hold.media_id`, else the account's, else
--   "default_moh").
-- * `moh_bleg` (default `moh_aleg`): the music for the held leg.
-- * `unhold_key` ("1"): the digit that ends the hold.
--
-- The call variable "on_hold" is true while holding (see hold_control); a
-- `hold` event records the settings. The caller hears `moh_aleg`, looped,
-- until pressing `unhold_key` (other digits are ignored); then "on_hold"
-- goes back to false and the flow continues to "_". A hang-up during the
-- hold ends the call.
--
-- Deviation: soft_hold holds the *other* leg of a bridged call, which hears
-- `moh_bleg`; the simulator's call has no other leg, so only the caller's
-- side (music until the unhold key) is played and `moh_bleg` is recorded in
-- the event only.
local kazoo = require("kazoo")
local metaflows = require("metaflows")

local function default_moh(call)
	local device = call.calling_device and call:doc("devices", call.calling_device)
	local moh = device and device.music_on_hold
	local media = type(moh) == "table" and kazoo.string(moh.media_id) or nil
	if media then
		return media
	end
	moh = call:account().music_on_hold
	return type(moh) == "table" and kazoo.string(moh.media_id) or "default_moh"
end

return {
	description = "Hold the call with music until the unhold key.",
	schema = metaflows.HOLD_SCHEMA,
	handle = function(call, data)
		local aleg = kazoo.string(data.moh_aleg) or default_moh(call)
		local bleg = kazoo.string(data.moh_bleg, aleg)
		local key = kazoo.string(data.unhold_key, "1")
		call:emit({ event = "hold", moh_aleg = aleg, moh_bleg = bleg, unhold_key = key })
		call:set("on_hold", true)
		local r = call:play(aleg, { terminators = { key }, loop = 0 })
		if r.reason == "hangup" then
			return call:stop()
		end
		call:set("on_hold", false)
	end,
}
