-- missed_call_alert: e-mail the recipients when the call ends without
-- having been answered (bridged) or having left a voicemail message
-- (Kazoo's cf_missed_call_alert, sent by teletype as "missed_call").
--
-- Data fields:
-- * `recipients` (required): [{type: "user"|"email", id: string|[string]}];
--   users are reached at their document's `email`, in the list's order.
--
-- Only calls coming into the account are watched: Kazoo checks the
-- authorizing type (none, "resource" or "sys_info"); here, calls not made
-- from one of the account's devices (carriers, other accounts). At the end,
-- when neither the call variable `call_bridged` (set by answered bridges)
-- nor `message_left` (set by voicemail) is true, a `notify` event
-- (notification=missed_call) with the addresses (`to`; left out when there
-- are none), the caller id and from_user/to_user is emitted.
--
-- Exits: always "_".
local notify = require("notify")

return {
	description = "E-mail the recipients if the call ends unanswered and without a voicemail.",
	schema = {
		type = "object",
		required = { "recipients" },
		properties = {
			recipients = notify.RECIPIENTS_SCHEMA,
		},
	},
	handle = function(call, data)
		if call.calling_device then
			call:log("debug", "missed_call_alert: the call comes from a device of the account; not watching it")
			return nil
		end
		call:on_end({ recipients = data.recipients })
		return nil
	end,
	on_end = function(call, data)
		if call:get("call_bridged") == true or call:get("message_left") == true then
			call:log("debug", "missed_call_alert: the call was bridged or a message was left; no alert")
			return
		end
		notify.send(call, "missed_call", {}, notify.emails(call, data.recipients, false))
	end,
}
