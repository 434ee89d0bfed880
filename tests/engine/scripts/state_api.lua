-- Test module: call variables, the previous module and atomic document
-- updates (data.what says which).
return {
	description = "Test: call:variables, call:previous_module, call:update_doc.",
	handle = function(call, data)
		local what = data.what
		if what == "set" then
			call:set("greeting", "hello")
			call:set("vip", { level = 2 })
		elseif what == "show" then
			local variables = call:variables()
			-- A copy: changing it changes no variable.
			variables.greeting = "changed"
			call:log("info", string.format("previous=%s variables=%s greeting=%s",
				tostring(call:previous_module()), json.encode(call:variables()), call:get("greeting")))
		elseif what == "update" then
			local function count(doc)
				return { count = ((doc and doc.count) or 0) + 1, id = "ignored" }
			end
			local first = call:update_doc("notes", "n1", count)
			local second = call:update_doc("notes", "n1", count)
			call:log("info", string.format("first=%d second=%d id=%s read=%d",
				first.count, second.count, second.id, call:doc("notes", "n1").count))
			local kept = call:update_doc("notes", "n1", function(doc)
				doc.count = 99
				return nil
			end)
			call:log("info", string.format("nil saves nothing: %s count=%d", tostring(kept), call:doc("notes", "n1").count))
			local ok, err = pcall(call.update_doc, call, "notes", "n1", function()
				return 5
			end)
			call:log("info", "not a table: " .. tostring(ok) .. " " .. tostring(err))
			ok, err = pcall(call.update_doc, call, "notes", "n1", function(doc)
				call:sleep(10)
				return doc
			end)
			call:log("info", "a verb inside: " .. tostring(ok) .. " " .. tostring(err))
			ok, err = pcall(call.update_doc, call, "callflows", "main", function(doc)
				return doc
			end)
			call:log("info", "callflows: " .. tostring(ok) .. " " .. tostring(err))
			ok, err = pcall(call.update_doc, call, "notes", "n1", function(doc)
				call:save_doc("notes", "n2", {})
				return doc
			end)
			call:log("info", "a save inside: " .. tostring(ok) .. " " .. tostring(err))
		end
		return nil
	end,
}
