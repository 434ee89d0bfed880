-- State kept in a helper: the helper's function assigns its module-level
-- local, so the helper is refused, with its own file and line.
local counter = require("counter")
return {
	handle = function(call, data)
		call:log("info", "count=" .. counter.next())
	end,
}
