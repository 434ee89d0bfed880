-- Test module: hand the call to another application.
return {
	description = "Test: usurp.",
	handle = function(call, data)
		return call:usurp(data.app)
	end,
}
