-- Closures that assign handle's own locals: per call, allowed.
return {
	handle = function(call, data)
		local seen = 0
		local function bump()
			seen += 1
		end
		bump()
		bump()
		call:log("info", "seen=" .. seen)
	end,
}
