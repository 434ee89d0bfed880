local n = 0
return {
	next = function()
		n += 1
		return n
	end,
}
