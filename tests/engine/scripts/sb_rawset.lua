-- Sandbox test: a module that tries to leave its sandbox; the attempt must
-- end the module with an error event while the call goes on.
return {
	description = "Sandbox test: sb_rawset.",
	handle = function(call, data)
		rawset(_G, "leak", 1)
	end,
}
