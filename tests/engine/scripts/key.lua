-- Test module: continue to the child named by data.key (nil when absent).
return {
	description = "Test: continue to the child named by data.key.",
	handle = function(call, data)
		return data.key
	end,
}
