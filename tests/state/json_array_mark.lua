-- Marking a module-level table as a JSON array while a call runs.
local list = {}
return {
	handle = function(call, data)
		json.array(list)
		call:log("info", "list=" .. json.encode(list))
	end,
}
