-- check_cid: branch on the caller-id number (Kazoo's cf_check_cid).
--
-- Data fields (CODE defaults):
-- * `regex` (".*"): a Kazoo regex searched (unanchored, like Erlang's
--   re:run) in the caller-id number. An invalid regex fails the module, as
--   re:run's badarg crashes Kazoo's (the call continues with "_").
-- * `use_absolute_mode` (false): on a match, the child key is the caller-id
--   number itself (e.g. "+14158867900") instead of "match".
-- * `caller_id.external.name`, `caller_id.external.number`, `user_id`: when
--   all three are given and the call goes down the match (or absolute)
--   child, the caller id is set to that name/number and the call variable
--   `owner_id` to `user_id` (Kazoo's kvs `owner_id`).
--
-- Exits, with Kazoo's `attempt` (a child that is missing or `{}` does not
-- count):
-- * regex matches: "match" (absolute mode: the caller-id number) when that
--   child exists, else "_";
-- * no match: "nomatch" when that child exists, else "_".
--
-- The caller-id number is Kazoo's call-record number
-- (kapps_call:caller_id_number), i.e. the caller's number as received:
-- `call.from`. Rewrites and prefixes from set_cid / prepend_cid only change
-- what bridges present, in Kazoo as here, so they are not seen.
-- Gap: Kazoo changes the call record itself, so a later check_cid,
-- cidlistmatch or lookupcidname would see the number set here; the API only
-- has the presentation rewrite (call:set_caller_id), so later modules still
-- see `call.from`.
local kazoo = require("kazoo")

local function external_identity(data)
	local caller_id = data.caller_id
	if type(caller_id) ~= "table" or type(caller_id.external) ~= "table" then
		return nil, nil
	end
	return kazoo.string(caller_id.external.name), kazoo.string(caller_id.external.number)
end

local NAME_NUMBER = {
	type = "object",
	properties = {
		name = { type = "string" },
		number = { type = "string" },
	},
}

return {
	description = "Branch on the caller-id number: match/nomatch by regex, or by the number itself.",
	schema = {
		type = "object",
		properties = {
			regex = { type = "string", default = ".*", description = "regex tested against the caller-id number" },
			use_absolute_mode = {
				type = "boolean",
				default = false,
				description = "branch to the child named by the caller-id number",
			},
			caller_id = {
				type = "object",
				properties = { external = NAME_NUMBER, internal = NAME_NUMBER },
			},
			user_id = { type = "string", description = "owner set on the call when it matches" },
		},
	},
	handle = function(call, data)
		local number = call.from
		local regex = kazoo.string(data.regex, ".*")
		if not re.test(regex, number) then
			if call:has_child("nomatch") then
				return "nomatch"
			end
			return nil
		end
		local key = "match"
		if kazoo.boolean(data.use_absolute_mode, false) then
			key = number
		end
		if not call:has_child(key) then
			return nil
		end
		local name, cid_number = external_identity(data)
		local user_id = kazoo.string(data.user_id)
		if name and cid_number and user_id then
			call:set_caller_id({ name = name, number = cid_number })
			call:set("owner_id", user_id)
		end
		return key
	end,
}
