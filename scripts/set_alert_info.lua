-- set_alert_info: set the Alert-Info header of later bridges (Kazoo's
-- cf_set_alert_info), as the call variable "alert_info".
return {
	description = "Set the Alert-Info of later bridges.",
	schema = {
		type = "object",
		required = { "alert_info" },
		properties = {
			alert_info = { type = "string", minLength = 1 },
		},
	},
	handle = function(call, data)
		if type(data.alert_info) == "string" then
			call:set("alert_info", data.alert_info)
		end
	end,
}
