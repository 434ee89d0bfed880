-- metaflows/callflow: run a callflow on the call in place of the flow
-- running (Kazoo's konami_callflow: the flow is handed to the callflow
-- application, which runs it on the call).
--
-- Data: `id` (a callflow id); without it, the callflow whose `numbers` hold
-- the first of `captures`, else `collected` (an exact number: Kazoo looks
-- the number up in its by-number view, so patterns do not count).
-- The flow running is abandoned (nothing to return to); an unknown id or
-- number is logged and nothing changes. Exit: stop.
local kazoo = require("kazoo")
local metaflows = require("metaflows")

return {
	description = "Run another callflow in place of the flow running.",
	schema = {
		type = "object",
		properties = {
			id = { type = "string" },
		},
	},
	handle = function(call, data)
		local id = kazoo.string(data.id)
		if id then
			local directive, err = call:branch(id)
			if not directive then
				call:log("warning", "callflow: " .. tostring(err))
				return call:stop()
			end
			return directive
		end
		local number = metaflows.capture(data, kazoo.string(data.collected))
		local route = number and call:lookup(number)
		if not route or route.matched ~= "number" then
			call:log("warning", "callflow: no callflow has the number " .. tostring(number))
			return call:stop()
		end
		return call:branch(route)
	end,
}
