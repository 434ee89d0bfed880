-- Test module: keeps playing after the caller hung up, catching the
-- "hangup" error to clean up.
return {
	description = "Test: clean up after a hang-up with pcall.",
	handle = function(call, data)
		local first = call:play("long-message")
		call:log("info", "play ended: " .. first.reason)
		local ok, err = pcall(function()
			return call:play("second-message")
		end)
		call:log("info", "second play: ok=" .. tostring(ok) .. " err=" .. tostring(err))
		call:play("third-message")
		call:log("error", "not reached: the hangup error ends the module")
	end,
}
