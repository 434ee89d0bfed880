-- Sandbox test: module-level state. Each invocation loads the module afresh,
-- so the count is 1 every time: nothing carries over between invocations.
local count = 0
return {
	description = "Sandbox test: module-level locals do not persist.",
	handle = function(call, data)
		count += 1
		call:log("info", "count=" .. count)
	end,
}
