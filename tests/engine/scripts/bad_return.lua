-- Test module: returns something that is not a child key.
return {
	description = "Test: return a value of the kind data.kind names.",
	handle = function(call, data)
		if data.kind == "table" then
			return {}
		elseif data.kind == "number" then
			return 1
		elseif data.kind == "boolean" then
			return true
		end
		return ""
	end,
}
