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
		elseif what == "record_call" then
			local first = call:record_call("start", { time_limit_s = 2, format = "wav" })
			call:log("info", "started " .. first .. " running=" .. tostring(call:recording()))
			call:sleep(1000)
			call:log("info", "after 1 s running=" .. tostring(call:recording()))
			call:sleep(1500)
			call:log("info", "after 2.5 s running=" .. tostring(call:recording()))
			local second = call:record_call("start")
			call:log("info", "started again " .. second .. " running=" .. tostring(call:recording()))
			call:record_call("stop")
			local ok, err = pcall(call.record_call, call, "start", { format = "mp3" })
			call:log("info", "mp3: " .. tostring(ok) .. " " .. tostring(err))
			ok, err = pcall(call.record, call, { format = "ogg" })
			call:log("info", "ogg: " .. tostring(ok) .. " " .. tostring(err))
		elseif what == "transfer" then
			call:log("info", "peer, no bridge: " .. tostring(call:transfer("2001", { leg = "b" })))
			local ok, err = pcall(call.transfer, call, "2001", { type = "attended" })
			call:log("info", "attended without endpoints: " .. tostring(ok) .. " " .. tostring(err))
			local outcome, why = call:transfer("2001", { type = "attended", endpoints = { "dev_bob" } })
			call:log("info", "attended, no bridge: " .. tostring(outcome) .. " " .. tostring(why))
			ok, err = pcall(call.transfer, call, "2001", { type = "warm" })
			call:log("info", "unknown type: " .. tostring(ok) .. " " .. tostring(err))
			return call:transfer("2001", { type = "blind", leg = "a" })
		end
		return nil
	end,
}
