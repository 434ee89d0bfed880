-- A custom module with a schema.
return {
	description = "Greets the caller by name.",
	schema = {
		type = "object",
		required = { "name" },
		additionalProperties = false,
		properties = {
			name = { type = "string", minLength = 1 },
			times = { type = "integer", minimum = 1, maximum = 3 },
		},
	},
	handle = function(call, data)
		call:tts("Hello " .. data.name)
	end,
}
