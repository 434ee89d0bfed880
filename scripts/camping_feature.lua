-- camping_feature: camp on a busy extension (Kazoo's cf_camping_feature,
-- kazoo-callflows.md §3.1): `*7<ext>`-style codes.
--
-- Data (Kazoo's camper settings, passed on in the request): `timeout` (the
-- callback's ring time, s), `tries`, `try_interval` (minutes), `stop_after`
-- (minutes).
--
-- It answers and looks the capture group up as a callflow. The target is
-- that callflow's first node: a `user` or `device` (with its `data.id`),
-- or `offnet`. A caller without a calling device, a number without a
-- callflow, or another module: "camper-deny", stop.
-- * The target is on no call (no call of the world rings, is answered by,
--   or comes from one of its devices): the call branches to a `user` /
--   `device` node for it at once (Kazoo's "connected").
-- * It is busy, or an off-net number no callflow claims: the request goes
--   to Kazoo's camper application (a `camping.request` event with the
--   targets, number and settings), the caller hears "camper-queue", stop.
--
-- The camper itself is call:camp: for a user's or device's devices, the
-- world calls the caller's device back once they are all free (for
-- `timeout` s, default 20; the camp lasts `stop_after` minutes, default 31;
-- one try) and the answered leg dials the number. Deviations: `tries` and
-- `try_interval` are not used; an off-net number has only the request. On
-- real calls the server places the callback the same way.
local kazoo = require("kazoo")
local endpoints = require("endpoints")

local function deny(call)
	call:play("camper-deny")
	return call:stop()
end

return {
	description = "Camp on a busy extension: call back when it is free.",
	schema = {
		type = "object",
		properties = {
			timeout = { type = "integer" },
			tries = { type = "integer" },
			try_interval = { type = "integer" },
			stop_after = { type = "integer" },
		},
	},
	handle = function(call, data)
		call:answer()
		local number = kazoo.string(call.capture_group)
		local route = number and call:lookup(number)
		if not route then
			return deny(call)
		end
		local doc = not route.no_match and call:doc("callflows", route.callflow_id) or nil
		local flow = doc and doc.flow
		local module = type(flow) == "table" and kazoo.string(flow.module)
		local id = type(flow) == "table" and type(flow.data) == "table" and kazoo.string(flow.data.id)
		if route.no_match then
			-- Kazoo looks the number up with no_match allowed: an off-net
			-- number is camped on through the carriers.
			module = "offnet"
		end
		if module ~= "offnet" and not ((module == "user" or module == "device") and id) then
			return deny(call)
		end
		if not call.calling_device then
			return deny(call)
		end
		local devices = {}
		if module == "device" then
			devices = { id }
		elseif module == "user" then
			devices = endpoints.owned_devices(call, id)
		end
		local busy = #devices > 0 and #endpoints.calls_of_devices(call, devices) > 0
		if module ~= "offnet" and not busy then
			return call:branch({ module = module, data = { id = id }, children = {} })
		end
		call:emit({
			event = "camping.request",
			number = number,
			target_type = module,
			target_id = id,
			targets = #devices > 0 and devices or nil,
			timeout = kazoo.integer(data.timeout),
			tries = kazoo.integer(data.tries),
			try_interval = kazoo.integer(data.try_interval),
			stop_after = kazoo.integer(data.stop_after),
		})
		-- The world calls back once the devices are free (call:camp); an
		-- off-net number, or a world that cannot watch, has only the
		-- request.
		if #devices > 0 then
			call:camp(number, devices, {
				timeout_s = kazoo.integer(data.timeout),
				stop_after_s = kazoo.integer(data.stop_after) and kazoo.integer(data.stop_after) * 60,
			})
		end
		call:play("camper-queue")
		return call:stop()
	end,
}
