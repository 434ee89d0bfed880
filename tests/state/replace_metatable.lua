-- setmetatable on a frozen table, to give it a writable __index.
local M = {}
function M.handle(call, data)
	setmetatable(M, { __index = { count = 1 } })
	call:log("info", "count=" .. tostring(M.count))
end
return M
