-- metaflows/transfer: transfer the other leg of the call (Kazoo's
-- konami_transfer), blind or attended.
--
-- Data (code defaults):
-- * the target: the first of `captures` (what the pattern captured), else
--   `target` (Kazoo reads captures first).
-- * `transfer_type` ("blind", the schema's default; or "attended").
-- * `takeback_dtmf` ("*1"): what the transferor presses to cancel an
--   attended transfer and talk to the transferee again.
-- * `moh` (the account's music on hold): what the transferee hears while
--   held; `ringback` ("%(2000,4000,440,480)", as a looped tone_stream):
--   what the transferor hears while the target rings (both recorded in the
--   `transfer` event); `timeout` (20 s): how long the target rings.
-- * `leg` (the schema's): accepted, not applied (the legs follow from who
--   pressed).
--
-- The transferor is the leg that pressed the code (`dtmf_leg`); the
-- transferee is the other one.
-- * blind, the callee pressed (or no bridge is up): the caller's leg goes
--   to the target: the number's callflow in the account (the flow running
--   is replaced: a `transfer.blind` event, then `branch`), else the call
--   leaves by a transfer.
-- * blind, the caller pressed during a bridge: the peer is transferred
--   (call:transfer_peer) and the bridge ends; the caller's flow goes on
--   after its bridge.
-- * attended (a bridge must be up): call:attended_transfer rings the target
--   from the transferor's side while the transferee is held: the transferor
--   hanging up completes it, the takeback code cancels it, a target that
--   does not answer (or hangs up) reconnects the legs.
-- Exit: stop (Kazoo's module never continues).
--
-- Deviations: Kazoo's konami_transfer always attends (it ignores
-- `transfer_type`); the schema's `transfer_type` is honoured here. Kazoo
-- dials the target through a loopback (the target's whole callflow); here
-- the devices of the target's callflow are rung when it starts with a
-- `device` or `user` node, else the number as an off-net endpoint.
local kazoo = require("kazoo")
local metaflows = require("metaflows")

local DEFAULT_RINGBACK = "%(2000,4000,440,480)"

local function tone_stream(ringback: string): string
	if string.sub(ringback, 1, 14) == "tone_stream://" then
		return ringback .. ";loops=-1"
	end
	return "tone_stream://" .. ringback .. ";loops=-1"
end

return {
	description = "Transfer the other leg: blind, or attended with a takeback code.",
	schema = {
		type = "object",
		properties = {
			captures = { type = "array", items = { type = "string" } },
			leg = { type = "string" },
			moh = { type = "string" },
			ringback = { type = "string" },
			takeback_dtmf = { type = "string", default = "*1" },
			target = { type = "string" },
			timeout = { type = "integer" },
			transfer_type = { type = "string", enum = { "attended", "blind" }, default = "blind" },
		},
	},
	handle = function(call, data)
		local target = metaflows.capture(data, kazoo.string(data.target))
		if not target then
			call:log("warning", "transfer: no target (neither captures nor target)")
			return call:stop()
		end
		local pressed = metaflows.pressed(call, data)
		local peer = call:peer()
		if kazoo.string(data.transfer_type, "blind") == "attended" then
			if not peer then
				call:log("warning", "transfer: an attended transfer needs a bridge")
				return call:stop()
			end
			call:attended_transfer(target, metaflows.target_endpoints(call, target), {
				transferor = pressed,
				takeback = kazoo.string(data.takeback_dtmf, "*1"),
				moh = metaflows.moh(call, data.moh),
				ringback = tone_stream(kazoo.string(data.ringback, DEFAULT_RINGBACK) :: string),
				timeout_s = math.max(1, math.ceil((kazoo.integer(data.timeout, 20) :: number))),
			})
			return call:stop()
		end
		if peer and pressed == "a" then
			call:transfer_peer(target)
			return call:stop()
		end
		local route = call:lookup(target, { normalize = true })
		if route then
			call:emit({ event = "transfer.blind", leg = "a", target = target, callflow_id = route.callflow_id })
			local directive = call:branch(route)
			if directive then
				return directive
			end
		end
		return call:transfer(target)
	end,
}
