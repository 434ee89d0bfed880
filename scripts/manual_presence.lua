-- manual_presence: set the presence (BLF) state of a presence id by calling
-- a number (Kazoo's cf_manual_presence).
--
-- Data (CODE defaults):
-- * `presence_id` (required; default the capture group): "user@realm", or
--   "user" to which "@" and the account's realm are added (the account
--   document's `realm`, else the account id).
-- * `status` ("idle"): "idle" -> presence state "terminated", "ringing" ->
--   "early", "busy" -> "confirmed".
--
-- Answers, records the state in the account's manual presence document
-- (type `manual_presence`, id `manual_presence`: presence id -> state, as
-- Kazoo's `manual_presence` document), and publishes it: a `presence` event
-- (presence_id, state).
--
-- Exit: continues to "_". Without a presence id (no `presence_id` and no
-- capture group) or with an unknown status, Kazoo's module crashes: here it
-- raises an error, so the call continues to "_" with an `error` event.
-- Deviation: Kazoo also publishes a dialog update to the presence bus with a
-- call id made of the md5 of the presence id; the event carries the id and
-- state only.
local kazoo = require("kazoo")

local STATES = {
	idle = "terminated",
	ringing = "early",
	busy = "confirmed",
}

return {
	description = "Set the presence state of a presence id.",
	schema = {
		type = "object",
		required = { "presence_id" },
		properties = {
			presence_id = { type = "string" },
			status = { type = "string", enum = { "idle", "ringing", "busy" }, default = "idle" },
		},
	},
	handle = function(call, data)
		call:answer()
		local presence_id = kazoo.string(data.presence_id, kazoo.string(call.capture_group))
		if presence_id == nil then
			error("manual_presence: no presence_id and no capture group")
		end
		if not string.find(presence_id, "@", 1, true) then
			local realm = kazoo.string(call:account().realm, call.account_id)
			presence_id = presence_id .. "@" .. realm
		end
		local status = kazoo.string(data.status, "idle")
		local state = STATES[status]
		if state == nil then
			error("manual_presence: unknown status " .. status)
		end
		-- Atomic: another call setting another presence id meanwhile is kept.
		call:update_doc("manual_presence", "manual_presence", function(stored)
			local doc = {}
			for key, value in stored or {} do
				if key ~= "id" then
					doc[key] = value
				end
			end
			doc[presence_id] = state
			return doc
		end)
		call:emit({ event = "presence", presence_id = presence_id, state = state })
	end,
}
