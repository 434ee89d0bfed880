-- State hidden in a metatable's __index table.
local defaults = {}
local M = setmetatable({}, { __index = defaults })
function M.handle(call, data)
	local mt = getmetatable(M)
	mt.__index.count = (mt.__index.count or 0) + 1
	call:log("info", "count=" .. M.count)
end
return M
