return {
	handle = function(call, data)
		local x = = 1
	end,
}
