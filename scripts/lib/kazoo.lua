-- Helpers shared by the built-in modules: reading node data the way Kazoo's
-- kz_json getters do (numbers and booleans may arrive as strings, as
-- Crossbar's non-strict validation lets them through).
local kazoo = {}

-- Every DTMF digit, in Kazoo's order: the default terminators of play, tts, ...
kazoo.ALL_DIGITS = { "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#" }

-- `value` as a whole number ("20" and 20 alike), else `default`.
function kazoo.integer(value: any, default: number?): number?
	if type(value) == "number" then
		return math.floor(value)
	elseif type(value) == "string" then
		local n = tonumber(value)
		if n then
			return math.floor(n)
		end
	end
	return default
end

-- `value` as a boolean (true, "true"; false, "false"), else `default`.
function kazoo.boolean(value: any, default: boolean?): boolean?
	if type(value) == "boolean" then
		return value
	elseif value == "true" then
		return true
	elseif value == "false" then
		return false
	end
	return default
end

-- `value` if it is a non-empty string, else `default`.
function kazoo.string(value: any, default: string?): string?
	if type(value) == "string" and value ~= "" then
		return value
	end
	return default
end

-- The keys of a table, sorted (so that loops over node data are
-- deterministic whatever the table's internal order).
function kazoo.sorted_keys(t: { [string]: any }): { string }
	local keys = {}
	for key in t do
		table.insert(keys, key)
	end
	table.sort(keys)
	return keys
end

-- A deep copy of a value (documents and node data are read-only), to change
-- and save; arrays stay arrays (an empty one is saved as []).
function kazoo.copy(value: any): any
	if type(value) ~= "table" then
		return value
	end
	return (json.decode(json.encode(value)))
end

-- Kazoo's default number classifiers (knm_converters), in order.
local CLASSIFIERS = {
	{ "tollfree_us", "^\\+1((?:800|88\\d|877|866|855|844|833|822)\\d{7})$" },
	{ "toll_us", "^\\+1(900\\d{7})$" },
	{ "emergency", "^(911|922|933|833|811|711|999)$" },
	{
		"caribbean",
		"^\\+?1((?:684|264|268|242|246|441|284|345|767|809|829|849|473|671|876|664|670|787|939|869|758|784|721|868|649|340)\\d{7})$",
	},
	{ "did_us", "^(\\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$" },
	{ "international", "^\\+([2-9]\\d{7,})$" },
	{ "unknown", "^(.*)$" },
}

-- The class of a (normalized) number by Kazoo's default classifiers
-- (knm_converters:classify): "did_us", "international", ...; nil when none
-- matches.
function kazoo.classify(number: string): string?
	for _, classifier in CLASSIFIERS do
		if re.test(classifier[2], number) then
			return classifier[1]
		end
	end
	return nil
end

-- Saves document `doc_type`/`id` changed by `change` (called with a copy
-- of the stored document, without its `id`, to change in place), as
-- Kazoo's open_doc / set_value / save_doc. Returns the saved body.
function kazoo.update_doc(call: any, doc_type: string, id: string, change: (any) -> ()): any
	local body = kazoo.copy(call:doc(doc_type, id) or {})
	body.id = nil
	change(body)
	call:save_doc(doc_type, id, body)
	return body
end

-- The object under `key` in a document (a table), or nil.
function kazoo.object(doc: any, key: string): { [string]: any }?
	if type(doc) == "table" and type(doc[key]) == "table" then
		return doc[key]
	end
	return nil
end

-- Whether `doc[key].enabled` is true (Kazoo's kz_json:is_true([Key,
-- <<"enabled">>], Doc, Default)): `default` (false) when it is absent.
function kazoo.enabled(doc: any, key: string, default: boolean?): boolean
	local object = kazoo.object(doc, key)
	return kazoo.boolean(object and object.enabled, default or false) == true
end

-- Sets `<key>.enabled` in document `doc_type`/`id` (its other keys kept),
-- saves it and logs "<module>: <doc_type>/<id> <key>.enabled=<value>".
function kazoo.save_enabled(call: any, module: string, doc_type: string, id: string, key: string, enabled: boolean)
	kazoo.update_doc(call, doc_type, id, function(body)
		local settings = kazoo.object(body, key) or {}
		settings.enabled = enabled
		body[key] = settings
	end)
	call:log("info", string.format("%s: %s/%s %s.enabled=%s", module, doc_type, id, key, tostring(enabled)))
end

-- The schema fragment for a list of DTMF digits.
kazoo.DIGITS_SCHEMA = { type = "array", items = { type = "string", enum = kazoo.ALL_DIGITS } }

return kazoo
