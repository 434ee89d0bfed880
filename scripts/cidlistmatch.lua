-- cidlistmatch: branch on whether the caller-id number is in a match list
-- (Kazoo's cf_cidlistmatch).
--
-- Data fields: `id`, the list's document id.
--
-- Lists are stored as Kazoo stores them: a list document
-- `lists/<id>.json` (`name`, `description`, ...) and one document per entry
-- in `list_entries/<entry id>.json`, each with `list_id` (the list's id) and
-- either `number` (or `prefix`) for a number prefix or `pattern` (or
-- `regexp`) for a regex; `displayname` (or `name`, `cid_name`) names it.
-- Entries are read in entry-id order, as Kazoo's CouchDB views return them;
-- entries with `pvt_deleted: true` are ignored. Values are compared as
-- strings: `"number": 1415` (a JSON number) never matches, as in Kazoo.
--
-- The caller-id number (`call.from`, see check_cid) matches when
-- * a prefix of it, with one leading "+" dropped, equals an entry's
--   `number` (else `prefix`): "+14155550100" matches "1", "14", ...,
--   "14155550100" (so an entry written "+1415" never matches), or
-- * an entry's `regexp` (else `pattern`) matches it (unanchored, "+"
--   included). An invalid regex fails the module (Kazoo's re:run crashes;
--   the call continues with "_").
--
-- Exits: "match" or "nomatch" when that child exists (Kazoo's `attempt`),
-- else "_". Only the entries are read (not the list document); a list
-- without entries, or a node without `id`, is no match.
local kazoo = require("kazoo")
local lists = require("lists")

local function matches(call, entries, number)
	local keys = lists.prefixes(number)
	for _, entry in entries do
		local key = lists.prefix_key(entry)
		if type(key) == "string" and keys[key] then
			call:log("debug", string.format("cidlistmatch: prefix %s (entry %s)", key, entry.id))
			return true
		end
	end
	local entry = lists.regexp_hit(entries, number)
	if entry then
		call:log("debug", string.format("cidlistmatch: pattern %s (entry %s)", lists.regexp_of(entry), entry.id))
		return true
	end
	return false
end

return {
	description = "Branch on whether the caller-id number is in a match list (prefixes and regexes).",
	schema = {
		type = "object",
		properties = {
			id = { type = "string", description = "list document id" },
		},
	},
	handle = function(call, data)
		local list_id = kazoo.string(data.id)
		local matched = list_id ~= nil and matches(call, lists.entries(call, list_id), call.from)
		local key = if matched then "match" else "nomatch"
		if call:has_child(key) then
			return key
		end
		return nil
	end,
}
