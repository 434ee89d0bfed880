-- notification: send a customer-defined notification (e-mail or SMS) about
-- the call, now or once it has ended (Kazoo's cf_notification, rendered and
-- sent by teletype).
--
-- Data fields (code defaults):
-- * `recipients` (required): [{type: "user"|"email", id: string|[string]}];
--   users are reached at their document's `email`. Kazoo lists the later
--   recipients' addresses first.
-- * `send_at` ("channel_destroy"): "channel_destroy" sends once the call has
--   ended (with its final call_bridged / message_left), "callflow_exec"
--   sends now; another value is logged and nothing is sent.
-- * `template_id`: the notification template; without one nothing is sent
--   (logged when it would have been).
-- * `notification_media` (["email", "sms"] values), `comments`: passed on.
--
-- "Sending" is a `notify` event (notification=cf_notification) with the
-- template id, the addresses (`to`), the caller id, from_user/to_user,
-- call_bridged, message_left, comments and notification_media.
--
-- Exits: always "_".
local kazoo = require("kazoo")
local notify = require("notify")

local function send(call, data)
	local template = kazoo.string(data.template_id)
	if not template then
		call:log("info", "notification: template id not defined, not sending notification")
		return
	end
	local fields: { [string]: any } = { template_id = template }
	if data.comments ~= nil then
		fields.comments = data.comments
	end
	if data.notification_media ~= nil then
		fields.notification_media = data.notification_media
	end
	notify.send(call, "cf_notification", fields, notify.emails(call, data.recipients, true))
end

return {
	description = "Send a notification now or when the call ends, then continue.",
	schema = {
		type = "object",
		required = { "recipients" },
		properties = {
			recipients = notify.RECIPIENTS_SCHEMA,
			send_at = { type = "string", enum = { "callflow_exec", "channel_destroy" }, default = "channel_destroy" },
			template_id = { type = "string" },
			notification_media = { type = "array", items = { type = "string", enum = { "email", "sms" } } },
			comments = { type = "string" },
		},
	},
	handle = function(call, data)
		local send_at = kazoo.string(data.send_at, "channel_destroy")
		if send_at == "channel_destroy" then
			call:on_end({
				recipients = data.recipients,
				template_id = data.template_id,
				notification_media = data.notification_media,
				comments = data.comments,
			})
		elseif send_at == "callflow_exec" then
			send(call, data)
		else
			call:log("warning", 'notification: bad value of "send_at": "' .. tostring(send_at) .. '"')
		end
		return nil
	end,
	on_end = function(call, data)
		send(call, data)
	end,
}
