-- set_variable: set one channel variable (Kazoo's cf_set_variable).
--
-- Data (CODE defaults):
-- * `variable`: which variable; only "call_priority" (set as
--   "Call-Priority") and "group_id" (set as "Group-ID") are known, any other
--   name sets nothing (Kazoo logs "can not set variable without name").
-- * `value`: the value, as a string (numbers are turned into strings); an
--   empty or missing value sets nothing.
-- * `channel`: "a" (default, the caller's leg) or "both" (exported to the
--   bridged legs too).
--
-- Exit: continues to "_".
--
-- Deviation: Kazoo sends the variable to the switch and stores it among the
-- call's custom channel variables; here it becomes the call variable of the
-- mapped name (`call:get("Call-Priority")`). The simulator's call has one
-- set of variables for all its legs, so `channel: "both"` sets the same
-- variable (a `log` line records the choice).
local kazoo = require("kazoo")

local NAMES = {
	call_priority = "Call-Priority",
	group_id = "Group-ID",
}

local function value_of(value)
	if type(value) == "number" or type(value) == "boolean" then
		return tostring(value)
	end
	return kazoo.string(value)
end

return {
	description = "Set the Call-Priority or Group-ID channel variable.",
	schema = {
		type = "object",
		properties = {
			variable = { type = "string" },
			value = { type = "string" },
			channel = { type = "string", enum = { "a", "both" }, default = "a" },
		},
	},
	handle = function(call, data)
		local name = NAMES[kazoo.string(data.variable, "")]
		local value = value_of(data.value)
		if name == nil then
			call:log("warning", "set_variable: can not set variable without name")
			return nil
		end
		if value == nil then
			call:log("warning", "set_variable: can not set variable without value")
			return nil
		end
		local channel = kazoo.string(data.channel, "a")
		if channel == "both" then
			call:log("debug", "set_variable: " .. name .. " on both legs")
		end
		call:set(name, value)
	end,
}
