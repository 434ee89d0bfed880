-- A buffer in the module's table.
return {
	scratch = buffer.create(16),
	handle = function(call, data)
		call:log("info", "ok")
	end,
}
