-- response: send a SIP response (Kazoo's cf_response). `code` (default 486),
-- `message` (its reason phrase), `media` (played first, as early media). A
-- final response (>= 300) ends the call with the code's Q.850 cause; the flow
-- stops either way (children are never used).
local kazoo = require("kazoo")

return {
	description = "Send a SIP response (486 busy by default).",
	schema = {
		type = "object",
		required = { "code" },
		properties = {
			code = { type = "integer", minimum = 100, maximum = 699, default = 486 },
			message = { type = "string" },
			media = { type = "string", maxLength = 2048 },
		},
	},
	handle = function(call, data)
		local media = kazoo.string(data.media)
		if media then
			call:play(media, { terminators = {} })
		end
		call:respond(kazoo.integer(data.code, 486), kazoo.string(data.message))
		return call:stop()
	end,
}
