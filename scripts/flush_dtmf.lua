-- flush_dtmf: forget the digits of a DTMF collection (Kazoo's
-- cf_flush_dtmf).
--
-- Data (CODE defaults):
-- * `collection_name` ("default"): the collection to clear (as filled by
--   collect_dtmf).
--
-- Exit: continues to "_".
--
-- Kazoo's "default" collection is where digits pressed during prompts
-- accumulate; `call:flush_dtmf` likewise drops the digits still buffered
-- (whatever the collection named) as well as the named collection.
local kazoo = require("kazoo")

return {
	description = "Clear a DTMF collection.",
	schema = {
		type = "object",
		properties = {
			collection_name = { type = "string", default = "default" },
		},
	},
	handle = function(call, data)
		call:flush_dtmf(kazoo.string(data.collection_name, "default"))
	end,
}
