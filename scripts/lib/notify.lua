-- Notifications (e-mail/SMS) for the notification and missed_call_alert
-- modules: recipients resolved to e-mail addresses as Kazoo's modules do,
-- and "sending" as a `notify` trace event (Kazoo publishes it for the
-- notification application, teletype, to render and send).
local kazoo = require("kazoo")

local notify = {}

-- The `recipients` schema: [{type: "user"|"email", id: string | [string]}].
notify.RECIPIENTS_SCHEMA = {
	type = "array",
	items = {
		type = "object",
		required = { "id", "type" },
		properties = {
			id = { oneOf = { { type = "string" }, { type = "array", items = { type = "string" } } } },
			type = { type = "string", enum = { "user", "email" } },
		},
	},
}

local function ids(value: any): { string }
	local list = {}
	if type(value) == "string" then
		table.insert(list, value)
	elseif type(value) == "table" then
		for _, v in value do
			if type(v) == "string" then
				table.insert(list, v)
			end
		end
	end
	return list
end

-- One recipient's addresses: "email" ids as they are, "user" ids by the
-- user documents' `email` (users without one, or missing, give none).
local function addresses(call, recipient: any): { string }
	local found = {}
	if type(recipient) ~= "table" then
		return found
	end
	for _, id in ids(recipient.id) do
		if recipient.type == "email" then
			if id ~= "" then
				table.insert(found, id)
			end
		elseif recipient.type == "user" then
			local user = id ~= "" and call:doc("users", id)
			local email = user and kazoo.string(user.email)
			if email then
				table.insert(found, email)
			end
		end
	end
	return found
end

-- The recipients' addresses. Kazoo's cf_notification folds the list
-- putting each recipient's addresses in front of the previous ones
-- (`newest_first`); cf_missed_call_alert keeps the list's order.
function notify.emails(call, recipients: any, newest_first: boolean): { string }
	local groups = {}
	if type(recipients) == "table" then
		for _, recipient in recipients do
			table.insert(groups, addresses(call, recipient))
		end
	end
	local emails = {}
	local from, to, step = 1, #groups, 1
	if newest_first then
		from, to, step = #groups, 1, -1
	end
	for i = from, to, step do
		for _, email in groups[i] do
			table.insert(emails, email)
		end
	end
	return emails
end

-- "Sends" a notification: a `notify` event with `fields` plus the call's
-- caller id, numbers and the call_bridged / message_left flags; `to` is
-- left out when there are no addresses (teletype then uses the template's
-- defaults).
function notify.send(call, kind: string, fields: { [string]: any }, emails: { string })
	local event: { [string]: any } = {
		event = "notify",
		notification = kind,
		caller_id_name = call.caller_id_name,
		caller_id_number = call.from,
		from_user = call.from,
		to_user = call.to,
		call_bridged = call:get("call_bridged") == true,
		message_left = call:get("message_left") == true,
	}
	for key, value in fields do
		event[key] = value
	end
	if #emails > 0 then
		event.to = emails
	end
	call:emit(event)
end

return notify
