-- Limits test: call variables of 1 MB each, a hundred of them (100 MB the
-- host would keep for one call); past the call's memory budget call:set
-- fails and the module ends with an error.
return {
	description = "Limits test: keeps more than a call may.",
	handle = function(call, data)
		local big = string.rep("x", 1048576)
		for i = 1, 100 do
			call:set("v" .. i, big)
		end
	end,
}
