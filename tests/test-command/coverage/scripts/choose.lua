-- Continues to the child named by the last digit of the caller's number.
return {
	handle = function(call, data)
		return string.sub(call.from, -1)
	end,
}
