-- privacy: hide the caller's identity on the call (Kazoo's cf_privacy),
-- e.g. behind a "*67" feature code.
--
-- Data fields (CODE defaults):
-- * `mode` ("full"): what to hide (Kazoo's kz_privacy:flags_by_mode):
--   "full" and "yes" (and any unknown mode) hide name and number, "name"
--   (or "hide_name") the name, "number" (or "hide_number") the number,
--   "none" sets nothing.
-- * `endpoint_strategy` ("overwrite"): stored as the call variable
--   `use_endpoint_privacy` (false for overwrite, true for merge): whether
--   the callee endpoints' own privacy settings are merged in at bridge
--   time.
--
-- Privacy is recorded as Kazoo's custom channel variables, named as
-- branch_variable normalizes them: `privacy_hide_name` and
-- `privacy_hide_number` (true/false), and presented on later bridges the
-- way Kazoo's default privacy method ("kazoo") does, by replacing the
-- caller id with the default anonymous values: name "Anonymous", number
-- "anonymous" (system config privacy.default_privacy_name/number), through
-- call:set_caller_id.
--
-- Exits:
-- * no capture group (or an empty one): set privacy, continue to "_";
-- * a capture group: normalized (call:normalize) and looked up as a route
--   (any result is accepted, including a `no_match` route, for on-net and
--   off-net callers alike); found: set privacy and branch to that callflow
--   (the capture group stays this call's, as in Kazoo); not found: stop,
--   without setting privacy.
-- Gap: Kazoo also rewrites the request to the looked-up number, so a later
-- `resources` node dials it instead of "*67..."; the API cannot change
-- `call.to` / `call.number` (it would need e.g. call:set_destination).
-- Gap: the anonymous caller id is a presentation rewrite, so a later
-- set_cid replaces it; in Kazoo privacy is applied at bridge time, after
-- every rewrite.
local kazoo = require("kazoo")

local ANONYMOUS_NAME = "Anonymous"
local ANONYMOUS_NUMBER = "anonymous"

local FLAGS = {
	full = { name = true, number = true },
	name = { name = true, number = false },
	number = { name = false, number = true },
}
FLAGS.yes = FLAGS.full
FLAGS.kazoo = FLAGS.full
FLAGS.hide_name = FLAGS.name
FLAGS.hide_number = FLAGS.number

local function set_privacy(call, data)
	local mode = kazoo.string(data.mode, "full")
	local strategy = kazoo.string(data.endpoint_strategy, "overwrite")
	if mode ~= "none" then
		local flags = FLAGS[mode] or FLAGS.full
		call:set("privacy_hide_name", flags.name)
		call:set("privacy_hide_number", flags.number)
		local changes = {}
		if flags.name then
			changes.name = ANONYMOUS_NAME
		end
		if flags.number then
			changes.number = ANONYMOUS_NUMBER
		end
		call:set_caller_id(changes)
	end
	call:set("use_endpoint_privacy", strategy == "merge")
end

return {
	description = "Hide the caller id (name, number or both), then continue or dial the captured number.",
	schema = {
		type = "object",
		properties = {
			mode = { type = "string", enum = { "full", "name", "number", "yes" }, default = "full" },
			endpoint_strategy = { type = "string", enum = { "overwrite", "merge" }, default = "overwrite" },
		},
	},
	handle = function(call, data)
		local captured = kazoo.string(call.capture_group)
		if not captured then
			set_privacy(call, data)
			return nil
		end
		local number = call:normalize(captured)
		local route = call:lookup(number)
		if not route then
			call:log("info", "privacy: no callflow for " .. number)
			return call:stop()
		end
		set_privacy(call, data)
		local directive, err = call:branch(route.callflow_id)
		if not directive then
			call:log("warning", "privacy: " .. tostring(err))
			return call:stop()
		end
		return directive
	end,
}
