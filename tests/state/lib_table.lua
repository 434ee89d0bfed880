-- State kept in a table a helper returns.
local store = require("store")
return {
	handle = function(call, data)
		store.items[#store.items + 1] = call.call_id
		call:log("info", "items=" .. #store.items)
	end,
}
