-- edr: emit an EDR (event data record) about the call, with the node's data
-- as custom data (Kazoo's cf_edr).
--
-- Data: anything; the whole node data becomes the record's `custom_data`.
--
-- Exit: continues to "_".
--
-- The record is an `edr` event (app "callflow", status "ok", verbosity
-- "info") with the call's account id, caller id name and number, callflow
-- id, the authorizing device (the calling device) and its owner when known.
-- Deviation: Kazoo publishes it on the EDR bus (kz_edr:event) with a few
-- more switch-side tags (Fetch-ID, Bridge-ID, Other-Leg-Call-ID) the
-- simulator does not have.
local kazoo = require("kazoo")

return {
	description = "Emit an event data record with the node data.",
	schema = { type = "object" },
	handle = function(call, data)
		local cid = call:caller_id()
		local device = call.calling_device
		local owner = nil
		if device then
			local doc = call:doc("devices", device)
			owner = doc and kazoo.string(doc.owner_id) or nil
		end
		call:emit({
			event = "edr",
			app = "callflow",
			status = "ok",
			verbosity = "info",
			account_id = call.account_id,
			callflow_id = call.callflow_id,
			caller_id_name = cid.name,
			caller_id_number = cid.number,
			authorizing_id = device,
			authorizing_type = device and "device" or nil,
			owner_id = owner,
			custom_data = data,
		})
	end,
}
