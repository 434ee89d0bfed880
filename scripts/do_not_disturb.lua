-- do_not_disturb: turn do-not-disturb on or off for a user or a device
-- (Kazoo's cf_do_not_disturb, kazoo-callflows.md §3.1), e.g. behind the
-- feature codes *78 (activate) and *79 (deactivate).
--
-- Data:
-- * `action`: "activate", "deactivate" or "toggle" (no default).
-- * `id`: the user or device whose setting changes (users/<id>, else
--   devices/<id>).
--
-- Whose setting: the `id` document; when there is none (no id, or no such
-- user or device), the caller's user (the call variable "owner_id", else the
-- owner of the calling device); else the calling device. None of them:
-- "dnd-not_available" (the call is not answered) and stop.
--
-- Otherwise the call is answered and `do_not_disturb.enabled` is set in that
-- document (its other keys kept), which is saved whole (a `store` event):
-- * activate: "dnd-activated" (when already on, only the prompt, nothing
--   saved);
-- * deactivate: "dnd-deactivated" (when already off, only the prompt);
-- * toggle: activate when off, deactivate when on;
-- * any other action, or none: "dnd-not_available", nothing saved.
-- Then "_". The endpoint builder (lib/endpoints.lua) skips a device whose
-- account, owner or own document has do_not_disturb.enabled, so later
-- bridges to that device, user, ring group or group do not ring it.
--
-- Deviations: Kazoo opens `id` in the account database whatever its type
-- and accepts it when it is a device or user document; here documents live
-- by type, so users/<id> is tried first, then devices/<id>. Kazoo retries
-- a save on a conflict; saves here do not conflict.
local kazoo = require("kazoo")
local endpoints = require("endpoints")

-- The document to change: doc type and id, or nil.
local function target(call, data)
	local id = kazoo.string(data.id)
	if id then
		for _, doc_type in { "users", "devices" } do
			if call:doc(doc_type, id) then
				return doc_type, id
			end
		end
		call:log("info", "do_not_disturb: no user or device " .. id .. "; trying the caller's")
	end
	local owner = endpoints.caller_owner(call)
	if owner and call:doc("users", owner) then
		return "users", owner
	end
	local device = call.calling_device
	if device and call:doc("devices", device) then
		return "devices", device
	end
	return nil
end

local PROMPTS = { [true] = "dnd-activated", [false] = "dnd-deactivated" }

return {
	description = "Turn do-not-disturb on or off for a user or device (the caller's by default).",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "activate", "deactivate", "toggle" } },
			id = { type = "string" },
		},
	},
	handle = function(call, data)
		local doc_type, id = target(call, data)
		if not doc_type then
			call:log("info", "do_not_disturb: no user or device to apply it to")
			call:play("dnd-not_available")
			return call:stop()
		end
		call:answer()
		local enabled = kazoo.enabled(call:doc(doc_type, id), "do_not_disturb")
		local action = kazoo.string(data.action)
		local wanted
		if action == "activate" then
			wanted = true
		elseif action == "deactivate" then
			wanted = false
		elseif action == "toggle" then
			wanted = not enabled
		else
			call:log("info", "do_not_disturb: invalid action " .. tostring(data.action))
			call:play("dnd-not_available")
			return nil
		end
		if wanted ~= enabled then
			kazoo.save_enabled(call, "do_not_disturb", doc_type, id, "do_not_disturb", wanted)
		end
		call:play(PROMPTS[wanted])
		return nil
	end,
}
