-- Test module: collect_digits with the options in data, logging the result.
return {
	description = "Test: collect digits.",
	handle = function(call, data)
		local r = call:collect_digits(data)
		call:log("info", "digits=" .. r.digits .. " reason=" .. r.reason)
	end,
}
