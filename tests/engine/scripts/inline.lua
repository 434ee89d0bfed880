-- Test module: branch to a flow built here (pivot-style).
return {
	description = "Test: branch to an inline flow.",
	handle = function(call, data)
		if data.invalid then
			local directive, err = call:branch({ data = {} })
			call:log("info", "invalid flow: " .. tostring(err))
			return directive
		end
		return call:branch({
			module = "key",
			data = { key = "x" },
			children = { x = { module = "probe", data = { what = "route" } } },
		})
	end,
}
