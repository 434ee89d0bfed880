-- Test module: raises a runtime error on line 6.
return {
	description = "Test: crash.",
	handle = function(call, data)
		local settings = nil
		return settings.missing
	end,
}
