-- transfer: transfer the call to an extension or number (Kazoo's
-- cf_transfer).
--
-- Data fields (code defaults):
-- * `target`: where to (default: the first of `captures`).
-- * `captures` (["no_match"]): what a metaflow's pattern captured (konami
--   passes it in the node data); note that the route's capture group is not
--   used: without `target` and `captures` Kazoo transfers to "no_match".
-- * `transfer_type` ("blind"; or "attended"); another value makes the
--   module fail (Kazoo's case clause), which continues to "_".
-- * `leg` (default "self" when the first capture is "no_match", else
--   "bleg"): which leg a blind transfer moves.
--
-- Exits: the transfer ends the flow without a hang-up.
--
-- Gap: call:transfer takes only the target: the transfer type and leg are
-- logged, not applied (our transfers are blind transfers of the caller).
local kazoo = require("kazoo")

return {
	description = "Transfer the call.",
	schema = {
		type = "object",
		properties = {
			captures = { type = "array", items = { type = "string" }, default = { "no_match" } },
			leg = { type = "string", enum = { "self", "bleg" } },
			target = { type = "string" },
			transfer_type = { type = "string", enum = { "attended", "blind" }, default = "blind" },
		},
	},
	handle = function(call, data)
		local capture = "no_match"
		if type(data.captures) == "table" then
			if data.captures[1] == nil then
				error("transfer: captures is empty") -- Kazoo: [Capture|_] = []
			end
			capture = tostring(data.captures[1])
		end
		local target = kazoo.string(data.target, capture) :: string
		local kind = kazoo.string(data.transfer_type, "blind")
		if kind ~= "blind" and kind ~= "attended" then
			error("transfer: unknown transfer_type " .. tostring(kind))
		end
		local leg = kazoo.string(data.leg, if capture == "no_match" then "self" else "bleg")
		if kind == "attended" then
			call:log("info", "transfer: attended transfer to " .. target)
		else
			call:log("info", "transfer: blind transfer of leg " .. tostring(leg) .. " to " .. target)
		end
		return call:transfer(target)
	end,
}
