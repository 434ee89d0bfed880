-- Test module: replaces this node with a voicemail node built from
-- `data.voicemail`, so that the voicemail module can be given data Crossbar
-- (and `callflow check`) would reject, such as an unknown action.
return {
	description = "Test: run the voicemail module with unchecked data.",
	handle = function(call, data)
		local directive, err = call:replace_flow({
			module = "voicemail",
			data = data.voicemail,
			children = { _ = { module = "play", data = { id = "after-voicemail" } } },
		})
		if not directive then
			call:log("error", "vm_inline: " .. tostring(err))
		end
		return directive
	end,
}
