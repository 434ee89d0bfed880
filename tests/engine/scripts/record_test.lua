-- Test module: record the caller.
return {
	description = "Test: record.",
	handle = function(call, data)
		local r = call:record({ time_limit_s = data.time_limit_s })
		call:log("info", r.recording_id .. " " .. r.reason .. " " .. r.duration_ms)
	end,
}
