-- send_dtmf: send a DTMF sequence to the caller (Kazoo's cf_send_dtmf).
--
-- Data (CODE defaults):
-- * `digits` (required): the sequence (0-9, *, #, A-D).
-- * `duration_ms` ("2000"): how long each tone lasts.
--
-- Exit: continues to "_" (also when `digits` is missing: nothing is sent).
--
-- Deviation: `call:send_dtmf` has no tone duration; `duration_ms` is
-- accepted and left to the switch (it does not change the trace).
local kazoo = require("kazoo")

return {
	description = "Send DTMF digits to the caller.",
	schema = {
		type = "object",
		required = { "digits" },
		properties = {
			digits = { type = "string" },
			duration_ms = { oneOf = { { type = "integer" }, { type = "string" } }, default = "2000" },
		},
	},
	handle = function(call, data)
		local digits = data.digits
		if type(digits) == "number" then
			digits = tostring(digits)
		end
		digits = kazoo.string(digits)
		if digits == nil then
			call:log("warning", "send_dtmf: no digits to send")
			return nil
		end
		call:send_dtmf(digits)
	end,
}
