-- set: merge the node's data into the call's call-center agent skills
-- (Kazoo's cf_set: the `cf_agent_skills` key of the call's store,
-- kazoo-callflows.md §3.1), for queues that route by skill.
--
-- Data: any object; its keys replace those of the call variable
-- `cf_agent_skills` (a shallow merge: a key's value is replaced whole).
-- Exit: "_".
return {
	description = "Merge skills into the call's call-center agent skills.",
	schema = { type = "object" },
	handle = function(call, data)
		local merged = {}
		local skills = call:get("cf_agent_skills")
		if type(skills) == "table" then
			for key, value in skills do
				merged[key] = value
			end
		end
		for key, value in data do
			merged[key] = value
		end
		call:set("cf_agent_skills", merged)
		return "_"
	end,
}
