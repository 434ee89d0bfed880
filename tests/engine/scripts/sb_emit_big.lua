-- Limits test: one emitted event of 100 KB: an error in this module.
return {
	description = "Limits test: sb_emit_big.",
	handle = function(call, data)
		call:emit({ event = "big", text = string.rep("y", 100000) })
	end,
}
