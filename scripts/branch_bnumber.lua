-- branch_bnumber: branch on the dialled number's capture group (Kazoo's
-- cf_branch_bnumber).
--
-- The capture group of the matching pattern (`call.capture_group`) is
-- normalized as routing normalizes numbers (call:normalize: the account's
-- dial plan, then E.164: "4158867900" -> "+14158867900", "1000" stays
-- "1000"). No capture group, or an empty one: continue to "_".
--
-- Data fields (CODE defaults):
-- * `hunt` (false): without hunting, the call goes to the child keyed by
--   the normalized capture group (e.g. "1000", "+14158867900"), else "_".
-- * with `hunt` true, the normalized number is looked up as a new route
--   when `hunt_allow` (a regex; unset or "" allows all) matches it and
--   `hunt_deny` (unset or "" denies none) does not; both are searched
--   unanchored. An invalid `hunt_allow` refuses the hunt, an invalid
--   `hunt_deny` is ignored (as Kazoo's try/catch around re:run). A route
--   found by `no_match` is used only for on-net calls (`call.inception` is
--   "onnet": Kazoo's allow_no_match); the call then branches to it, the
--   route's captures becoming the call's capture group (this node's "_" is
--   the return point). Hunting refused or nothing found: "_".
local kazoo = require("kazoo")

-- Whether `pattern` matches; nil when the pattern is invalid.
local function search(pattern, text)
	local ok, result = pcall(re.test, pattern, text)
	if not ok then
		return nil
	end
	return result
end

local function hunt_allowed(call, data, number)
	local allow = kazoo.string(data.hunt_allow)
	if allow then
		local ok = search(allow, number)
		if ok == nil then
			call:log("info", "branch_bnumber: hunt_allow " .. allow .. " is invalid, not allowing")
			return false
		elseif not ok then
			return false
		end
	end
	local deny = kazoo.string(data.hunt_deny)
	if deny then
		local denied = search(deny, number)
		if denied == nil then
			call:log("info", "branch_bnumber: hunt_deny " .. deny .. " is invalid, allowing")
		elseif denied then
			return false
		end
	end
	return true
end

return {
	description = "Branch to the child named by the capture group, or hunt for its callflow.",
	schema = {
		type = "object",
		properties = {
			hunt = { type = "boolean", default = false, description = "look the number up as a new route" },
			hunt_allow = { type = "string", description = "regex the number must match to hunt" },
			hunt_deny = { type = "string", description = "regex that refuses the hunt" },
		},
	},
	handle = function(call, data)
		local captured = kazoo.string(call.capture_group)
		if not captured then
			return nil
		end
		local number = call:normalize(captured)
		if number == "" then
			return nil
		end
		if not kazoo.boolean(data.hunt, false) then
			return number
		end
		if not hunt_allowed(call, data, number) then
			return nil
		end
		local route = call:lookup(number)
		if not route then
			return nil
		end
		if route.no_match and call.inception ~= "onnet" then
			call:log("info", "branch_bnumber: no_match route refused for an off-net call")
			return nil
		end
		local directive, err = call:branch(route)
		if not directive then
			call:log("warning", "branch_bnumber: " .. tostring(err))
			return nil
		end
		return directive
	end,
}
