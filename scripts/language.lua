-- language: set the call's language (Kazoo's cf_language), used by later
-- prompts, TTS and say. `language` is required ("en", "fr-ca", ...).
return {
	description = "Set the call's language.",
	schema = {
		type = "object",
		required = { "language" },
		properties = {
			language = { type = "string", pattern = "^[A-Za-z]{2}(-[A-Za-z]{2})?$" },
		},
	},
	handle = function(call, data)
		if type(data.language) == "string" then
			call:set_language(data.language)
		end
	end,
}
