-- A field of a standard library table.
return {
	handle = function(call, data)
		table.count = (table.count or 0) + 1
		call:log("info", "count=" .. table.count)
	end,
}
