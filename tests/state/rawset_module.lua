-- rawset on the module's table (bypasses __newindex, not a freeze).
local M = {}
function M.handle(call, data)
	rawset(M, "count", (rawget(M, "count") or 0) + 1)
	call:log("info", "count=" .. M.count)
end
return M
