-- A field of the module's own table.
local M = {}
function M.handle(call, data)
	M.count = (M.count or 0) + 1
	call:log("info", "count=" .. M.count)
end
return M
