-- A test metaflow module: returns data.key (a child key), or call:stop()
-- for "stop"; data.fail raises an error. Shows the data it was given.
return {
	description = "Test: branch by key, stop, or fail.",
	handle = function(call, data)
		call:log("info", "pick: dtmf_leg=" .. tostring(data.dtmf_leg) .. " collected=" .. tostring(data.collected))
		if data.fail then
			error("pick was told to fail")
		end
		if data.key == "stop" then
			return call:stop()
		end
		return data.key
	end,
}
