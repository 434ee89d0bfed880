-- Limits test: 60 log lines of 1 MB each; each is cut to the log limit.
return {
	description = "Limits test: sb_log_flood.",
	handle = function(call, data)
		local big = string.rep("x", 1e6)
		for _ = 1, 60 do
			call:log("info", big)
		end
	end,
}
