-- Sandbox test: a module that tries to leave its sandbox; the attempt must
-- end the module with an error event while the call goes on.
return {
	description = "Sandbox test: sb_debug.",
	handle = function(call, data)
		return debug.traceback()
	end,
}
