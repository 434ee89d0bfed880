-- A global written while the script loads.
counter = 0
return {
	handle = function(call, data)
		call:log("info", "counter=" .. counter)
	end,
}
