-- call_waiting: turn call waiting on or off for the calling device or its
-- user (Kazoo's cf_call_waiting, kazoo-callflows.md §3.1).
--
-- Data:
-- * `action` ("toggle"): "activate", "deactivate" or "toggle".
-- * `scope` ("device"): "device" (the calling device) or "user" (the
--   caller's user: the call variable "owner_id", else the owner of the
--   calling device). Kazoo's code comment says the default is "user"; its
--   code and schema use "device", as here.
--
-- No such document (no calling device, no user): "cw-not_available" (the
-- call is not answered) and stop. Otherwise the call is answered; the
-- current setting is `call_waiting.enabled` (absent: on, Kazoo's default);
-- the action gives the new one, "cw-activated" or "cw-deactivated" says it,
-- and the document is saved whole (a `store` event) only when the setting
-- changed (its other keys kept). An unknown action: "cw-not_available",
-- nothing saved. Then "_".
--
-- Only the setting: whether a busy device gets a second call is the
-- bridging side's business (not done here). Kazoo retries a save on a
-- conflict (3 times); saves here do not conflict.
local kazoo = require("kazoo")
local endpoints = require("endpoints")

-- The new setting from the old one, by action.
local ACTIONS = {
	toggle = function(enabled)
		return not enabled
	end,
	activate = function()
		return true
	end,
	deactivate = function()
		return false
	end,
}

-- The document to change: doc type and id, or nil.
local function target(call, scope)
	local doc_type, id
	if scope == "user" then
		doc_type, id = "users", endpoints.caller_owner(call)
	else
		doc_type, id = "devices", call.calling_device
	end
	if id and call:doc(doc_type, id) then
		return doc_type, id
	end
	return nil
end

return {
	description = "Turn call waiting on or off for the calling device or its user.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "activate", "deactivate", "toggle" }, default = "toggle" },
			scope = { type = "string", enum = { "device", "user" }, default = "device" },
		},
	},
	handle = function(call, data)
		local scope = kazoo.string(data.scope, "device")
		local doc_type, id = target(call, scope)
		if not doc_type then
			call:log("info", "call_waiting: no " .. tostring(scope) .. " document to apply it to")
			call:play("cw-not_available")
			return call:stop()
		end
		call:answer()
		local action = ACTIONS[kazoo.string(data.action, "toggle") :: string]
		if not action then
			call:log("info", "call_waiting: unsupported action " .. tostring(data.action))
			call:play("cw-not_available")
			return nil
		end
		local enabled = kazoo.enabled(call:doc(doc_type, id), "call_waiting", true)
		local wanted = action(enabled)
		call:play(if wanted then "cw-activated" else "cw-deactivated")
		if wanted ~= enabled then
			kazoo.save_enabled(call, "call_waiting", doc_type, id, "call_waiting", wanted)
		end
		return nil
	end,
}
