-- receive_fax: hand the call to the fax application to receive a fax
-- (Kazoo's cf_receive_fax publishes a fax request with Action "receive").
--
-- Data (CODE defaults):
-- * `owner_id`: the user the received fax belongs to (absent: none).
-- * `media.fax_option`: T.38 option, "auto" | "true" | "false" or a
--   boolean (absent: the fax application's default).
--
-- Exits: none: emits `fax.receive` (action, owner_id, fax_option) and
-- returns `call:usurp("fax")`; the walk ends without a hang-up.
-- As in Kazoo (props:filter_empty), empty values are left out: an empty
-- owner id, and a `fax_option` of false/"false".
--
-- Deviation: receiving and storing the fax (and e-mailing it) belong to the
-- fax application, outside the simulator; the trace shows the hand-off only.
local kazoo = require("kazoo")
local fax = require("fax")

return {
	description = "Hand the call to the fax application to receive a fax.",
	schema = {
		type = "object",
		properties = {
			owner_id = { type = "string" },
			media = fax.MEDIA_SCHEMA,
		},
	},
	handle = function(call, data)
		call:emit({
			event = "fax.receive",
			action = "receive",
			owner_id = kazoo.string(data.owner_id),
			fax_option = fax.option(data.media),
		})
		return call:usurp("fax")
	end,
}
