-- collect_dtmf: collect digits into a named collection (Kazoo's
-- cf_collect_dtmf). Answers first. Digits already pressed count first; the
-- collection ends at `max_digits` (default 1), at a terminator (default "#",
-- not stored), or when `timeout` (ms before the first digit, default 5000)
-- or `interdigit_timeout` (default 2000) runs out. The digits are stored
-- under `collection_name` (default "default") for later modules. Continues
-- to "_".
local kazoo = require("kazoo")

local DIGIT = { type = "string", enum = kazoo.ALL_DIGITS }

return {
	description = "Collect DTMF digits into a named collection.",
	schema = {
		type = "object",
		properties = {
			collection_name = { type = "string" },
			interdigit_timeout = { type = "integer", minimum = 1 },
			max_digits = { type = "integer", minimum = 1, default = 1 },
			terminator = DIGIT,
			terminators = { type = "array", items = DIGIT },
			timeout = { type = "integer", minimum = 1, default = 5000 },
		},
	},
	handle = function(call, data)
		call:answer()
		local terminators = data.terminators
		if terminators == nil then
			terminators = { kazoo.string(data.terminator, "#") }
		end
		call:collect_digits({
			max = kazoo.integer(data.max_digits, 1),
			timeout_ms = kazoo.integer(data.timeout, 5000),
			interdigit_ms = kazoo.integer(data.interdigit_timeout, 2000),
			terminators = terminators,
			collection = kazoo.string(data.collection_name, "default"),
		})
	end,
}
