-- A random number drawn while the script loads would be one call's draw
-- shared by all (and differ with the call that loaded it first).
local token = math.random(1000)
return {
	handle = function(call, data)
		call:log("info", "token=" .. token)
	end,
}
