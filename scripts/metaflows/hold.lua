-- metaflows/hold: put the other leg on hold (Kazoo's konami_hold, a
-- FreeSWITCH soft_hold).
--
-- Data (code defaults):
-- * `moh_aleg` (the account's music on hold, else "default_moh"): what the
--   held leg hears when the caller asked for the hold.
-- * `moh_bleg` (`moh_aleg`): what it hears when the callee asked.
-- * `unhold_key` ("1"): the digit the leg that asked presses to end the
--   hold (a `leg_unhold` event); the `resume` metaflow ends it too.
--
-- The hold does not stop the bridge: the two go on talking time while one
-- listens to music. Without a bridge there is nothing to hold: a log line.
-- Exit: continue to "_".
local kazoo = require("kazoo")
local metaflows = require("metaflows")

return {
	description = "Hold the other leg of the bridge until the unhold key.",
	schema = metaflows.HOLD_SCHEMA,
	handle = function(call, data)
		local pressed = metaflows.pressed(call, data)
		if call:peer() == nil then
			call:log("info", "hold: no bridge, nothing to hold")
			return nil
		end
		local aleg = metaflows.moh(call, data.moh_aleg)
		local music = if pressed == "a" then aleg else kazoo.string(data.moh_bleg, aleg)
		call:hold(metaflows.other(pressed), { moh = music, unhold_key = kazoo.string(data.unhold_key, "1") })
		return nil
	end,
}
