-- The string metatable, shared by every string of the VM.
return {
	handle = function(call, data)
		local index = getmetatable("").__index
		index.count = (index.count or 0) + 1
		call:log("info", "count=" .. index.count)
	end,
}
