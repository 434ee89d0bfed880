-- Sandbox test: a module that writes to its own table, to keep state
-- between calls.
local M = {}
M.description = "Sandbox test: write to the module table."
function M.handle(call, data)
	M.count = (M.count or 0) + 1
end
return M
