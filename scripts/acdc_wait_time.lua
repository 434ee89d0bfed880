-- acdc_wait_time: branch on a call-center queue's average wait (Kazoo's
-- cf_acdc_wait_time; documents in scripts/lib/acdc.lua).
--
-- Data: `id` (the queue), `window` (s of history, 3600).
--
-- The average wait, in whole seconds, of the callers the queue connected
-- to an agent in the last `window` seconds (0 without any) is compared
-- with the node's integer child keys: the greatest key it reaches is taken
-- (an `acdc.wait_time` event shows the average), else "_".
--
-- Deviation: Kazoo asks its stats process; here the queue's state document
-- keeps each connected caller's wait (written by acdc_member).
local acdc = require("acdc")

return {
	description = "Branch on a call-center queue's average wait time.",
	schema = {
		type = "object",
		properties = {
			id = { type = "string" },
			window = { type = "integer" },
		},
	},
	handle = function(call, data)
		return acdc.wait_time(call, data)
	end,
}
