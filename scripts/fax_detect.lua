-- fax_detect: listen for fax tones and branch on the result (Kazoo's
-- cf_fax_detect).
--
-- Data (CODE defaults):
-- * `duration` (5, Kazoo's system setting `fax_detect_duration_s`): seconds
--   to listen.
--
-- Exits: the child "ON_FAX" when a fax is heard, else "ON_VOICE"; each falls
-- back to "_". Simulations hear a fax when the scenario says "fax": true.
local kazoo = require("kazoo")

return {
	description = "Detect a fax caller: ON_FAX or ON_VOICE.",
	schema = {
		type = "object",
		properties = {
			duration = { type = "integer" },
		},
	},
	handle = function(call, data)
		local seconds = kazoo.integer(data.duration, 5)
		if call:detect_fax(seconds) == "fax" then
			return "ON_FAX"
		end
		return "ON_VOICE"
	end,
}
