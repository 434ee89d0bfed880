-- Test module: make an HTTP request and log the response.
return {
	description = "Test: HTTP request.",
	handle = function(call, data)
		local r = call:http({ url = data.url, method = data.method, body = data.body })
		call:log("info", string.format("status=%d body=%s error=%s", r.status, r.body, tostring(r.error)))
	end,
}
