-- bridge_confirm: bridge to the desk phone, which must press 1 to take the
-- call (call:bridge's `confirm`), for the SIP test of confirm on answer.
return {
	description = "Bridge to dev_desk, confirmed with 1.",
	schema = { type = "object", properties = {} },
	handle = function(call, _data)
		call:bridge({ "dev_desk" }, { confirm = { key = "1" } })
		return nil
	end,
}
