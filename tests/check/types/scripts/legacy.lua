-- legacy: no --!strict, so never type-checked.
return {
	handle = function(call, data)
		local n: number = "not a number"
		call:answr()
	end,
}
