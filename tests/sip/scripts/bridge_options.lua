-- bridge_options: bridge to the desk phone with call:bridge's options (a
-- caller id, an X- header, no early media, a 2 s talk time limit), for the
-- SIP test that checks a real INVITE carries them and the limit ends the
-- call.
return {
	description = "Bridge to dev_desk with every option a real call honours.",
	schema = { type = "object", properties = {} },
	handle = function(call, _data)
		call:bridge({ "dev_desk" }, {
			caller_id = { name = "Front desk", number = "+15550100777" },
			headers = { ["X-Account-Tag"] = "gold" },
			ignore_early_media = true,
			time_limit_s = 2,
		})
		return nil
	end,
}
