-- Test module: the json helpers and arrays surviving a round trip.
return {
	description = "Test: json.decode, json.encode, json.array.",
	handle = function(call, data)
		local value, err = json.decode('{"b": [1, 2, {"c": null}], "a": "x", "e": []}')
		call:log("info", "decoded a=" .. value.a .. " b[2]=" .. value.b[2] .. " err=" .. tostring(err))
		call:log("info", "re-encoded " .. json.encode(value))
		local _, bad = json.decode("{oops")
		call:log("info", "bad: " .. bad)
		-- Node data arrays stay arrays, even empty ones; plain empty tables are objects.
		call:log("info", "data " .. json.encode({ list = data.list, empty = {}, marked = json.array() }))
		call:save_doc("things", "t1", { items = json.array(), tags = data.list })
		call:log("info", "saved " .. json.encode(call:doc("things", "t1")))
		-- Keys in document order, for data and decoded text; sorted for plain tables.
		call:log("info", "data keys " .. table.concat(json.keys(data.order), ","))
		local decoded = json.decode('{"b": 1, "c": 2, "a": 3}')
		decoded.d = 4
		decoded.c = nil
		call:log("info", "decoded keys " .. table.concat(json.keys(decoded), ","))
		call:log("info", "plain keys " .. table.concat(json.keys({ y = 1, x = 2 }), ","))
		-- The shared array metatable cannot be changed.
		local ok, why = pcall(function()
			getmetatable(data.list).__index = function() return "leak" end
		end)
		call:log("info", "metatable write: " .. tostring(ok) .. " " .. tostring(why))
	end,
}
