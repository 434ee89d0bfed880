-- pivot: ask a web application what to do with the call (Kazoo's cf_pivot
-- and the pivot application), Kazoo callflow format.
--
-- Data fields (code defaults):
-- * `voice_url` (required): the application's URL, http(s). Private and
--   loopback addresses are refused (Crossbar refuses to save them; the
--   simulator refuses them unless allowed): the call continues to "_".
-- * `method` ("get"): GET sends the parameters in the query string; POST in
--   the body, as `req_body_format` "form" (default) or "json".
-- * `req_format` ("kazoo"): "twiml" is not supported: logged, then "_".
-- * `req_timeout_ms` (5000, at most 5000): how long the request may take.
-- * `cdr_url`: where the pivot application POSTs the call's record at the
--   end, which for Kazoo-format responses only happens on a bad body (below).
-- * `debug` (false): Kazoo keeps request/response debug documents; not here.
--
-- The request carries Kazoo's parameters: Call-ID, Account-ID, From, To,
-- Request, their realms (the account's `realm`, when it has one),
-- Api-Version, Direction, Caller-ID-Name, Caller-ID-Number, User-ID (the
-- calling device's owner), Language, Digits (the "default" DTMF
-- collection).
--
-- Exits:
-- * a 200 response whose JSON body is a flow ({"module", "data",
--   "children"}; a callflow document {"flow": {...}} is accepted too) ->
--   that flow replaces this node (call:replace_flow: the return stack and
--   the branch count are untouched);
-- * the request fails (no answer, connection error, a response slower than
--   `req_timeout_ms`) -> "_" once cf_pivot's 10 s wait for the pivot
--   application has run out (counted from the request);
-- * a response other than 200 (4xx, 5xx, ...) -> "_" at once;
-- * a TwiML (XML) response -> logged, "_" (TwiML is not supported);
-- * a bad body (empty, not JSON, not a valid flow) -> the pivot application
--   hangs the call up; with a `cdr_url` it does not, and the call continues
--   to "_" after the 10 s wait (and the record is posted to `cdr_url` at
--   the end).
--
-- Deviations: Kazoo's code sends TwiML-style parameters when `req_format`
-- is missing (the schema default, "kazoo", is written by Crossbar); we send
-- Kazoo's. Call-Status and the recording/transcription parameters are not
-- sent. Only the "default" DTMF collection is sent as Digits (the API cannot
-- list collections). The Content-Type of a response is not needed: a body
-- that is not XML is read as JSON.
local kazoo = require("kazoo")
local web = require("web")

-- cf_pivot waits this long for the pivot application to answer.
local PIVOT_WAIT_MS = 10000

-- Kazoo's request parameters (kzt_kazoo:req_params/1), as an ordered list
-- of {name, value} (web.encode: a table value is sent as name[key]=value).
local function request_params(call)
	local params = {}
	local function add(name: string, v: any)
		if v ~= nil and v ~= "" then
			table.insert(params, { name, v })
		end
	end
	local realm = kazoo.string(call:account().realm)
	local owner
	local device = call.calling_device and call:doc("devices", call.calling_device)
	if device then
		owner = kazoo.string(device.owner_id)
	end
	local digits = call:collection("default")
	add("Call-ID", call.call_id)
	add("Account-ID", call.account_id)
	add("From", call.from)
	add("From-Realm", realm)
	add("To", call.to)
	add("To-Realm", realm)
	add("Request", call.number)
	add("Request-Realm", realm)
	add("Api-Version", "4.x")
	add("Direction", "inbound")
	add("Caller-ID-Name", call.caller_id_name)
	add("Caller-ID-Number", call.from)
	add("User-ID", owner)
	add("Language", call:language())
	if digits ~= "" then
		add("Digits", { default = digits })
	end
	return params
end

-- Waits out what is left of cf_pivot's wait for the pivot application,
-- counted from `started_ms`.
local function wait_out(call, started_ms: number)
	local left = PIVOT_WAIT_MS - (call:elapsed_ms() - started_ms)
	if left > 0 then
		call:sleep(left)
	end
end

-- What the pivot application does with a body it cannot run: hang up, or
-- (with a cdr_url) leave the call to cf_pivot's wait and post the record at
-- the end.
local function bad_body(call, data, why: string, started_ms: number)
	local cdr_url = kazoo.string(data.cdr_url)
	call:log("warning", "pivot: bad response body (" .. why .. ")")
	if not cdr_url then
		call:hangup()
		return call:stop()
	end
	call:on_end({ cdr_url = cdr_url })
	wait_out(call, started_ms)
	return nil
end

return {
	description = "Fetch a callflow from a web application and run it.",
	schema = {
		type = "object",
		required = { "voice_url" },
		properties = {
			voice_url = { type = "string", pattern = "^https?://", format = "uri" },
			method = { type = "string", enum = { "get", "post", "GET", "POST" }, default = "get" },
			req_format = { type = "string", enum = { "kazoo", "twiml" }, default = "kazoo" },
			req_body_format = { type = "string", enum = { "form", "json" }, default = "form" },
			req_timeout_ms = { type = "integer", maximum = 5000 },
			cdr_url = { type = "string", pattern = "^https?://", format = "uri" },
			debug = { type = "boolean", default = false },
		},
	},
	handle = function(call, data)
		local url = kazoo.string(data.voice_url)
		if not url then
			call:log("warning", "pivot: no voice_url; continuing")
			return nil
		end
		if kazoo.string(data.req_format) == "twiml" then
			call:log("warning", "pivot: TwiML (req_format \"twiml\") is not supported; continuing")
			return nil
		end
		local params = request_params(call)
		local timeout = math.min(kazoo.integer(data.req_timeout_ms, 5000) :: number, 5000)
		local request: { [string]: any } = { url = url, method = "GET", timeout_ms = timeout }
		if string.lower(kazoo.string(data.method, "get") :: string) == "post" then
			request.method = "POST"
			if kazoo.string(data.req_body_format) == "json" then
				local body = {}
				for _, p in params do
					body[p[1]] = p[2]
				end
				request.body = body
			else
				request.headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
				request.body = web.encode(params)
				call:log("debug", "pivot: body " .. request.body)
			end
		else
			request.url = web.with_query(url, web.encode(params))
		end

		local started = call:elapsed_ms()
		local r = call:http(request)
		if r.status == 0 and string.sub(r.error or "", 1, 8) == "refused:" then
			call:log("warning", "pivot: " .. tostring(r.error) .. "; continuing")
			return nil
		end
		if r.status == 0 or r.duration_ms > timeout then
			-- The pivot application reports nothing: cf_pivot gives up
			-- after its wait.
			call:log("warning", "pivot: no response (" .. (r.error or "timed out") .. ")")
			wait_out(call, started)
			return nil
		end
		if r.status ~= 200 then
			call:log("warning", "pivot: HTTP " .. r.status .. "; continuing")
			return nil
		end
		if r.body == "" then
			return bad_body(call, data, "empty", started)
		end
		local content_type = ""
		for name, value in r.headers do
			if string.lower(name) == "content-type" then
				content_type = string.lower(value)
			end
		end
		if string.find(content_type, "xml", 1, true) or string.match(r.body, "^%s*<") then
			call:log("warning", "pivot: TwiML responses are not supported; continuing")
			return nil
		end
		local body, err = json.decode(r.body)
		if err then
			return bad_body(call, data, err, started)
		end
		local flow = body
		if type(body) == "table" and body.module == nil and type(body.flow) == "table" then
			flow = body.flow
		end
		if type(flow) ~= "table" then
			return bad_body(call, data, "not a flow", started)
		end
		local directive, why = call:replace_flow(flow)
		if not directive then
			return bad_body(call, data, "invalid flow: " .. tostring(why), started)
		end
		return directive
	end,
	-- The pivot application posts the call's record to cdr_url once the
	-- call has ended.
	on_end = function(call, data)
		local record = {
			{ "Call-ID", call.call_id },
			{ "Account-ID", call.account_id },
			{ "Caller-ID-Name", call.caller_id_name },
			{ "Caller-ID-Number", call.from },
			{ "To", call.to },
			{ "Request", call.number },
			{ "Duration-Seconds", tostring(call:elapsed_ms() // 1000) },
		}
		call:http({
			url = data.cdr_url,
			method = "POST",
			headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
			body = web.encode(record),
		})
	end,
}
