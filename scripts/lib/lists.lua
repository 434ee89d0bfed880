-- Match lists for the cidlistmatch, lookupcidname and dynamic_cid modules,
-- stored as Kazoo stores them: a list document `lists/<id>.json` and one
-- document per entry in `list_entries/<entry id>.json` with `list_id`,
-- `number` (or `prefix`) for a number prefix and `regexp` (or `pattern`)
-- for a regex. Entries come in entry-id order, as Kazoo's CouchDB views
-- return them; entries with `pvt_deleted` are left out.
local lists = {}

-- JavaScript truthiness, as the CouchDB view functions test fields.
function lists.truthy(value: any): boolean
	return value ~= nil and value ~= false and value ~= "" and value ~= 0
end
local truthy = lists.truthy

-- The live entries of every list, grouped by list id, in entry-id order.
function lists.entries_by_list(call): { [string]: { any } }
	local by_list = {}
	for _, entry in call:docs("list_entries") do
		local list_id = entry.list_id
		if type(list_id) == "string" and not truthy(entry.pvt_deleted) then
			local entries = by_list[list_id]
			if not entries then
				entries = {}
				by_list[list_id] = entries
			end
			table.insert(entries, entry)
		end
	end
	return by_list
end

-- The live entries of one list, in entry-id order.
function lists.entries(call, list_id: string): { any }
	return lists.entries_by_list(call)[list_id] or {}
end

-- Every prefix of the number, a leading "+" dropped (Kazoo's build_keys),
-- as a set.
function lists.prefixes(number: string): { [string]: boolean }
	if string.sub(number, 1, 1) == "+" then
		number = string.sub(number, 2)
	end
	local set = {}
	for i = 1, #number do
		set[string.sub(number, 1, i)] = true
	end
	return set
end

-- The entry's `key` field when truthy, else its `fallback` field.
local function field_or(entry, key: string, fallback: string): any
	if truthy(entry[key]) then
		return entry[key]
	end
	return entry[fallback]
end

-- The entry's number prefix: `number`, else `prefix`.
function lists.prefix_key(entry): any
	return field_or(entry, "number", "prefix")
end

-- The entry's regex: `regexp`, else `pattern`.
function lists.regexp_of(entry): any
	return field_or(entry, "regexp", "pattern")
end

-- The first entry whose regex matches the number (unanchored), or nil. An
-- invalid regex raises an error (Kazoo's re:run crashes).
function lists.regexp_hit(entries: { any }, number: string): any
	for _, entry in entries do
		local pattern = lists.regexp_of(entry)
		if type(pattern) == "string" and pattern ~= "" and re.test(pattern, number) then
			return entry
		end
	end
	return nil
end

return lists
