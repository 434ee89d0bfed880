-- resources: send the call to carriers (Kazoo's cf_resources, through
-- stepswitch). Data fields, with Kazoo's code defaults:
--
-- * `to_did`: the number to dial (default: the dialled number; see
--   lib/carriers.lua for `bypass_e164`, `do_not_normalize` and the calling
--   device's `dial_plan`).
-- * `use_local_resources` (true): the account's own carriers (hunting in
--   `hunt_account_id`, default this account) rather than the system's.
-- * `caller_id_type` ("external"): which `caller_id` of the device, its
--   owner or the account the carriers see.
-- * `timeout` (s; default: the switch's, 60 here), `ringback`,
--   `outbound_flags`, `dynamic_flags`, `emit_account_id`,
--   `custom_sip_headers`, `ignore_early_media`, `format_from_uri`,
--   `from_uri_realm`, `resource_type`.
--
-- Exits: answered (and the call over) -> stop; TRANSFER -> transfer (the
-- flow ends without a hang-up); a failure -> the child named by the cause
-- ("USER_BUSY", "NO_ANSWER", ...) or else by the SIP code ("sip:486");
-- without one, Kazoo's default response for the cause (early media and a
-- SIP response, only when the node has no "_" child), then stop with the
-- cause (= hang-up, or back to the flow that branched here). The "_" child
-- is never taken.
--
-- Simulations: the carrier is the scenario endpoint keyed by the number
-- dialled (after normalization), else "offnet". Each request is traced as
-- an `offnet_req` event (to_did, resources local/global, hunt_account_id,
-- the caller id presented, flags, custom SIP headers). Deviations are listed
-- in lib/carriers.lua.
local kazoo = require("kazoo")
local carriers = require("carriers")

return {
	description = "Call out through the carriers; failures go to cause/SIP-code children.",
	schema = carriers.schema(),
	handle = function(call, data)
		return carriers.dial(call, data, kazoo.boolean(data.use_local_resources, true) :: boolean)
	end,
}
