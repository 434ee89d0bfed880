-- webhook: notify a web application that the call reached this node
-- (Kazoo's cf_webhook, fired by the webhooks application), then continue
-- to "_" whatever happens.
--
-- Data fields (code defaults):
-- * `uri`: where to send it (without one nothing is sent).
-- * `http_verb` ("get"): GET puts the call's data in the query string; POST
--   sends it as a form (application/x-www-form-urlencoded).
-- * `retries` (3, kept within 1..5): attempts in all; only a request that
--   gets no response is tried again, a non-200 answer is not.
-- * `custom_data`: an object merged into the call's data (its keys win).
--
-- The call's data, in sorted key order: account_id, authorizing_id and
-- authorizing_type (the calling device), call_bridged, call_id,
-- caller_id_name, caller_id_number, from_user, request_user (the number
-- as routing normalized it), to_user, the from/request/to realms (the
-- account's `realm`, when it has one), inception ("offnet" for calls from
-- carriers), language, message_left. Nested objects are sent as
-- name[key]=value, lists as name[]=value.
--
-- Exits: always "_".
--
-- Deviations: Kazoo hands the hook to the webhooks application and
-- continues at once, retrying in the background 2 s apart; our requests are
-- made in line (the call waits for each response) and retried at once: the
-- API has no background request. Kazoo's cluster_id and the switch/queue
-- fields of the call are not sent.
local kazoo = require("kazoo")
local web = require("web")

-- The call's data as the webhooks application sends it.
local function call_data(call): { [string]: any }
	local realm = kazoo.string(call:account().realm)
	local data: { [string]: any } = {
		account_id = call.account_id,
		call_bridged = call:get("call_bridged") == true,
		call_id = call.call_id,
		caller_id_name = call.caller_id_name,
		caller_id_number = call.from,
		from_user = call.from,
		language = call:language(),
		message_left = call:get("message_left") == true,
		request_user = call.number,
		to_user = call.to,
		from_realm = realm,
		request_realm = realm,
		to_realm = realm,
	}
	if call.calling_device then
		data.authorizing_id = call.calling_device
		data.authorizing_type = "device"
	end
	if call.inception == "offnet" then
		data.inception = "offnet"
	end
	return data
end

return {
	description = "Send the call's data to a web hook, then continue.",
	schema = {
		type = "object",
		properties = {
			uri = { type = "string", format = "uri" },
			http_verb = { type = "string", enum = { "post", "get" } },
			retries = { type = "integer" },
			custom_data = { type = "object" },
		},
	},
	handle = function(call, data)
		local uri = kazoo.string(data.uri)
		if not uri then
			call:log("warning", "webhook: no uri; nothing sent")
			return nil
		end
		local payload = call_data(call)
		if type(data.custom_data) == "table" then
			for key, value in data.custom_data do
				payload[key] = value
			end
		end
		local request: { [string]: any } = { method = "GET", timeout_ms = 10000 }
		local verb = string.lower(kazoo.string(data.http_verb, "get") :: string)
		if verb == "post" then
			request.method = "POST"
			request.url = uri
			request.headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
			request.body = web.querystring(payload)
			call:log("debug", "webhook: body " .. request.body)
		else
			request.url = web.with_query(uri, web.querystring(payload))
		end
		local attempts = math.clamp(kazoo.integer(data.retries, 3) :: number, 1, 5)
		for attempt = 1, attempts do
			local r = call:http(request)
			if r.status ~= 0 then
				break
			end
			if attempt == attempts then
				call:log("warning", "webhook: no response after " .. attempts .. " attempt(s); giving up")
			end
		end
		return nil
	end,
}
