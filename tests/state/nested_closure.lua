-- handle itself assigns nothing outside it; a function nested in it does.
local count = 0
return {
	handle = function(call, data)
		local function bump()
			count += 1
		end
		bump()
		call:log("info", "count=" .. count)
	end,
}
