-- Test module for the misc batch: log call variables, DTMF collections or a
-- stored document, so scenarios can show what a module left behind.
-- data.variables: names; data.collections: names; data.doc: {type, id}.
local function encode(value)
	if type(value) == "table" then
		local keys = {}
		for key in value do
			table.insert(keys, key)
		end
		table.sort(keys, function(a, b)
			return tostring(a) < tostring(b)
		end)
		local parts = {}
		for _, key in keys do
			table.insert(parts, tostring(key) .. "=" .. encode(value[key]))
		end
		return "{" .. table.concat(parts, " ") .. "}"
	end
	return tostring(value)
end

return {
	description = "Test: log variables, collections or a document.",
	handle = function(call, data)
		for _, name in data.variables or {} do
			call:log("info", name .. "=" .. encode(call:get(name)))
		end
		for _, name in data.collections or {} do
			call:log("info", "collection " .. name .. "=" .. call:collection(name))
		end
		if data.doc then
			call:log("info", data.doc[1] .. "/" .. data.doc[2] .. " " .. encode(call:doc(data.doc[1], data.doc[2])))
		end
	end,
}
