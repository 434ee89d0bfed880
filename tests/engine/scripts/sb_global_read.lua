-- Sandbox test: reads the global another module tried to write.
return {
	description = "Sandbox test: read a global.",
	handle = function(call, data)
		call:log("info", "counter=" .. tostring(counter) .. " leak=" .. tostring(leak))
	end,
}
