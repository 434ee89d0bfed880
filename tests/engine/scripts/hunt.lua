-- Test module: look data.number up as a route and branch to it.
return {
	description = "Test: look up a number and branch to its callflow.",
	handle = function(call, data)
		local route, reason = call:lookup(data.number, { normalize = data.normalize == true })
		if not route then
			call:log("info", "not found: " .. reason)
			return nil
		end
		call:log("info", "found " .. route.callflow_id .. " by " .. route.matched)
		return call:branch(route)
	end,
}
