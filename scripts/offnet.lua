-- offnet: send the call to the system's carriers (Kazoo's cf_offnet: the
-- resources module with `use_local_resources` false, whatever the node
-- says). Same data fields and exits as `resources`: answered -> stop;
-- TRANSFER -> transfer; a failure -> the cause child, else the "sip:<code>"
-- child, else the default response for the cause (when there is no "_"
-- child) and stop with the cause. The "_" child is never taken.
local carriers = require("carriers")

return {
	description = "Call out through the system's carriers; failures go to cause/SIP-code children.",
	schema = carriers.schema(),
	handle = function(call, data)
		return carriers.dial(call, data, false)
	end,
}
