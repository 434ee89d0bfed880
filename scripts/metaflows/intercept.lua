-- metaflows/intercept: ring a device, a user's devices or a number, and
-- connect the leg that pressed the code to whoever answers (Kazoo's
-- konami_intercept).
--
-- Data (code defaults): `target_type` ("device", "user", "number"),
-- `target_id`, `unbridged_only` (true), `auto_answer` (false: the target
-- answers by itself when true), `can_call_self` (true: a user's devices
-- include the caller's own).
--
-- Only the caller's leg can be intercepted, and (unbridged_only) only while
-- it is not bridged: in a menu, on hold music, ... The target rings beside
-- the verb the code interrupted; answered, the caller talks to it until a
-- side hangs up (which ends the call); not answered, nothing changed and
-- the interrupted verb goes on. Exit: stop.
--
-- Deviation: with `unbridged_only: false` Kazoo would take a bridged leg
-- away from its peer; a bridged call is never intercepted here.
local kazoo = require("kazoo")
local endpoints = require("endpoints")

local function targets(call, data)
	local kind = kazoo.string(data.target_type, "device")
	local id = kazoo.string(data.target_id)
	if not id then
		return {}
	elseif kind == "number" then
		return { { number = id } }
	elseif kind == "user" then
		local found = {}
		for _, device in endpoints.owned_devices(call, id) do
			if device ~= call.calling_device or kazoo.boolean(data.can_call_self, true) then
				table.insert(found, device)
			end
		end
		return found
	elseif id == call.calling_device then
		return {}
	end
	return { id }
end

return {
	description = "Ring a target and connect the caller to it.",
	schema = {
		type = "object",
		properties = {
			auto_answer = { type = "boolean", default = false },
			can_call_self = { type = "boolean", default = true },
			target_id = { type = "string" },
			target_type = { type = "string", enum = { "device", "user", "number" } },
			unbridged_only = { type = "boolean", default = true },
		},
	},
	handle = function(call, data)
		if call:peer() then
			call:log("info", "intercept: the call is bridged; not intercepted")
			return call:stop()
		end
		local list = targets(call, data)
		if #list == 0 then
			call:log("info", "intercept: nothing to ring")
			return call:stop()
		end
		call:bridge(list, { timeout_s = 20, page = kazoo.boolean(data.auto_answer, false) })
		return call:stop()
	end,
}
