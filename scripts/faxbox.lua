-- faxbox: hand the call to the fax application to receive a fax into a fax
-- box (Kazoo's cf_faxbox, kazoo-callflows.md §3.1).
--
-- Data:
-- * `id`, else `faxbox_id`: the fax box (faxboxes/<id>).
-- * `media.fax_option`: T.38 option, "auto" | "true" | "false" or a
--   boolean; when the node does not set it, the fax box document's own
--   `media.fax_option`.
--
-- Exits: none: emits `fax.receive` (action "receive", faxbox_id,
-- fax_option) and returns `call:usurp("fax")`; the walk ends without a
-- hang-up. As in Kazoo (props:filter_empty), empty values are left out: no
-- fax box id, and a `fax_option` of false/"false". Kazoo does not check that
-- the fax box exists (the fax application does): neither does this module,
-- which only logs it.
--
-- Deviation: receiving and storing the fax (and e-mailing it) belong to the
-- fax application, outside the simulator, which has no fax reception to
-- simulate; the trace shows the hand-off only, as for receive_fax.
local kazoo = require("kazoo")
local fax = require("fax")

return {
	description = "Hand the call to the fax application to receive a fax into a fax box.",
	schema = {
		type = "object",
		properties = {
			id = { type = "string" },
			faxbox_id = { type = "string" },
			media = fax.MEDIA_SCHEMA,
		},
	},
	handle = function(call, data)
		local id = kazoo.string(data.id) or kazoo.string(data.faxbox_id)
		local faxbox = id and call:doc("faxboxes", id)
		if id and not faxbox then
			call:log("info", "faxbox: no fax box document " .. id)
		end
		local media = data.media
		if type(media) ~= "table" or media.fax_option == nil then
			media = kazoo.object(faxbox, "media")
		end
		call:emit({
			event = "fax.receive",
			action = "receive",
			faxbox_id = id,
			fax_option = fax.option(media),
		})
		return call:usurp("fax")
	end,
}
