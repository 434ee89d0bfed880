-- Test module: transfer the call to data.target.
return {
	description = "Test: transfer.",
	handle = function(call, data)
		return call:transfer(data.target)
	end,
}
