-- A table deep inside the module's table.
local M = { state = { seen = {} } }
function M.handle(call, data)
	table.insert(M.state.seen, call.call_id)
	call:log("info", "seen=" .. #M.state.seen)
end
return M
