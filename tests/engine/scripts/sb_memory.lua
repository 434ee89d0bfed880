-- Sandbox test: a module that tries to leave its sandbox; the attempt must
-- end the module with an error event while the call goes on.
return {
	description = "Sandbox test: sb_memory.",
	handle = function(call, data)
		local s = string.rep("x", 1e9) return s
	end,
}
