-- Limits test: 30,000 emitted events; the trace keeps its maximum.
return {
	description = "Limits test: sb_emit_flood.",
	handle = function(call, data)
		for i = 1, 30000 do
			call:emit({ event = "tick", i = i })
		end
	end,
}
