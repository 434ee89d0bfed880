-- A global written while a call runs.
return {
	handle = function(call, data)
		counter = (counter or 0) + 1
		call:log("info", "counter=" .. counter)
	end,
}
