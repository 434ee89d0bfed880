-- Test module: log what the call looks like (data.what says which part).
return {
	description = "Test: log call facts and state.",
	handle = function(call, data)
		local what = data.what or "route"
		if what == "route" then
			call:log("info", string.format("callflow=%s capture=%s no_match=%s",
				call.callflow_id, tostring(call.capture_group), tostring(call.no_match)))
		elseif what == "facts" then
			call:log("info", string.format("to=%s from=%s name=%s account=%s inception=%s device=%s call=%s module=%s",
				call.to, call.from, call.caller_id_name, call.account_id, call.inception,
				tostring(call.calling_device), call.call_id, call.module))
		elseif what == "caller_id" then
			local cid = call:caller_id()
			call:log("info", string.format("name=%q number=%q prefix=%q/%q original=%q/%q",
				cid.name, cid.number, cid.prefix_name, cid.prefix_number, cid.original_name, cid.original_number))
		elseif what == "variables" then
			call:log("info", string.format("greeting=%s vip=%s alert_info=%s language=%s",
				tostring(call:get("greeting")), tostring(call:get("vip")), tostring(call:get("alert_info")),
				tostring(call:language())))
		elseif what == "collection" then
			call:log("info", "collection " .. data.name .. "=" .. call:collection(data.name))
		elseif what == "children" then
			call:log("info", "children=" .. table.concat(call:children(), ",") .. " has_x=" .. tostring(call:has_child("x"))
				.. " has_empty=" .. tostring(call:has_child("empty")))
		elseif what == "date" then
			local d = call:date(data.timezone)
			call:log("info", string.format("%04d-%02d-%02d %02d:%02d:%02d weekday=%d %s now=%d elapsed=%d",
				d.year, d.month, d.day, d.hour, d.minute, d.second, d.weekday, d.timezone, call:now(), call:elapsed_ms()))
		elseif what == "random" then
			call:log("info", string.format("random %d %d %d", math.random(1, 100), math.random(1, 100), math.random(6)))
		elseif what == "doc" then
			local user = call:doc("users", "alice")
			local missing = call:doc("users", "nobody")
			call:log("info", "user=" .. user.first_name .. " id=" .. user.id .. " missing=" .. tostring(missing))
		end
		return data.next
	end,
}
