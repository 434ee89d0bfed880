-- Test module: registers an on_end handler that reports what it can see
-- once the call has ended.
return {
	description = "Test: on_end handlers.",
	handle = function(call, data)
		call:on_end({ label = data.label, fail = data.fail })
	end,
	on_end = function(call, data)
		call:log("info", "on_end " .. data.label .. ": call_bridged=" .. tostring(call:get("call_bridged")))
		local _, play_error = pcall(function()
			call:play("late")
		end)
		local _, register_error = pcall(function()
			call:on_end({})
		end)
		call:log("info", "play: " .. tostring(play_error) .. "; on_end: " .. tostring(register_error))
		call:emit({ event = "probe.ended", label = data.label })
		if data.fail then
			error("handler " .. data.label .. " failed")
		end
	end,
}
