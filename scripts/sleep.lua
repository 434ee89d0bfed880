-- sleep: wait (Kazoo's cf_sleep). `duration` (default 0) in `unit`
-- ms | s | m | h (default s; an unknown unit is seconds), clamped to 0..24 h.
-- Continues to "_" after the wait; a hang-up during it ends the call.
local kazoo = require("kazoo")

local UNITS = { ms = 1, s = 1000, m = 60000, h = 3600000 }
local MAX_MS = 86400000

return {
	description = "Wait for a while.",
	schema = {
		type = "object",
		properties = {
			duration = { type = "integer", minimum = 0, maximum = 86400000, default = 0 },
			unit = { type = "string", enum = { "ms", "s", "m", "h" }, default = "s" },
		},
	},
	handle = function(call, data)
		local factor = UNITS[data.unit] or 1000
		local ms = math.clamp(kazoo.integer(data.duration, 0) * factor, 0, MAX_MS)
		call:sleep(ms)
	end,
}
