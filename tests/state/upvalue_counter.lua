-- A module-level local that handle counts calls in.
local count = 0
return {
	handle = function(call, data)
		count += 1
		call:log("info", "count=" .. count)
	end,
}
