-- Test module: bridge to data.endpoints and log the outcome.
return {
	description = "Test: bridge and log the outcome.",
	handle = function(call, data)
		local opts = { strategy = data.strategy, timeout_s = data.timeout_s }
		for key, value in data.options or {} do
			opts[key] = value
		end
		local r = call:bridge(data.endpoints, opts)
		call:log("info", string.format("status=%s cause=%s sip=%d answered_by=%s talk_ms=%d",
			r.status, r.cause, r.sip, tostring(r.answered_by), r.talk_ms))
		if r.status ~= "answered" then
			return "failed"
		end
	end,
}
