-- Test module: registers an on_end handler it does not have.
return {
	description = "Test: call:on_end without an on_end function.",
	handle = function(call)
		call:on_end()
	end,
}
