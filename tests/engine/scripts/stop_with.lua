-- Test module: stop, with an optional hang-up cause.
return {
	description = "Test: stop.",
	handle = function(call, data)
		return call:stop(data.cause)
	end,
}
