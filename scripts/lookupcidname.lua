-- lookupcidname: name the caller from match lists (Kazoo's cf_lookupcidname).
--
-- Data fields: `lists` (required; default []): list ids, searched in order.
-- Lists and their entries are stored as for cidlistmatch: `lists/<id>.json`
-- and `list_entries/<entry id>.json` with `list_id`, `number` (or `prefix`)
-- or `pattern` (or `regexp`), and a name.
--
-- The caller-id number is `call.from` (Kazoo's call-record number, see
-- check_cid). Search:
-- 1. Prefixes: for each list in order, the entries whose `number` (else
--    `prefix`) is a prefix of the number with one leading "+" dropped; the
--    first list with such entries decides, with its longest prefix (equal
--    prefixes: the lowest entry id). The search stops there.
-- 2. Only when no list has a prefix hit: for each list in order, its
--    entries' `regexp` (else `pattern`) in entry-id order; the first that
--    matches (unanchored) decides. An invalid regex fails the module (the
--    call continues with "_"), as re:run crashes Kazoo's.
-- When a name is found, the caller-id name is set (call:set_caller_id
-- {name}); the number is unchanged. Always continues to "_".
--
-- Kazoo master's quirks, reproduced (cf_lookupcidname.erl):
-- * a prefix hit reads the NESTED path displayname -> name -> cid_name of
--   the entry: only an entry like
--   `"displayname": {"name": {"cid_name": "Acme"}}` yields a name; with a
--   plain `"displayname": "Acme"` the hit gives no name, yet the search
--   still stops (regexes are not tried);
-- * a regex hit takes the first defined of displayname, name, cid_name of
--   the CouchDB view ROW ({id, key, value, doc}), which has none of them:
--   a regex hit never sets a name in Kazoo. Here too: the hit is logged
--   and the name left unchanged.
-- Older Kazoo (before 4.x) read `displayname` of the entry in both cases.
-- Gap: as in check_cid, the name set here is a presentation rewrite; the
-- call's `caller_id_name` fact does not change.
local kazoo = require("kazoo")
local lists = require("lists")

-- Kazoo's kz_json:get_value on a path: nil as soon as a step is not an object.
local function path_value(value, path)
	for _, key in path do
		if type(value) ~= "table" then
			return nil
		end
		value = value[key]
	end
	return value
end

-- The longest-prefix entry of one list, or nil.
local function prefix_hit(entries, keys)
	local best, best_len = nil, -1
	for _, entry in entries do
		local key = lists.prefix_key(entry)
		if type(key) == "string" and keys[key] and #key > best_len then
			best, best_len = entry, #key
		end
	end
	return best
end

local function list_ids(data)
	local ids = {}
	if type(data.lists) == "table" then
		for _, id in data.lists do
			if type(id) == "string" then
				table.insert(ids, id)
			end
		end
	end
	return ids
end

return {
	description = "Set the caller-id name from match lists (longest prefix, else regexes).",
	schema = {
		type = "object",
		required = { "lists" },
		properties = {
			lists = { type = "array", items = { type = "string" }, default = {}, description = "list ids, in order" },
		},
	},
	handle = function(call, data)
		local number = call.from
		local by_list = lists.entries_by_list(call)
		local ids = list_ids(data)
		local keys = lists.prefixes(number)
		local found, name = false, nil
		for _, id in ids do
			local entry = prefix_hit(by_list[id] or {}, keys)
			if entry then
				found = true
				name = path_value(entry, { "displayname", "name", "cid_name" })
				call:log("debug", string.format("lookupcidname: prefix %s in list %s (entry %s)", lists.prefix_key(entry), id, entry.id))
				break
			end
		end
		if not found then
			for _, id in ids do
				local entry = lists.regexp_hit(by_list[id] or {}, number)
				if entry then
					-- Kazoo reads the name from the view row, where it never is.
					call:log("debug", string.format("lookupcidname: regexp %s in list %s (entry %s)", lists.regexp_of(entry), id, entry.id))
					break
				end
			end
		end
		local caller_name = kazoo.string(name)
		if caller_name then
			call:set_caller_id({ name = caller_name })
		end
	end,
}
