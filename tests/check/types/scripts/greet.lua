--!strict
-- greet: answers, then goes on to the child "_".
return {
	handle = function(call: Call, _data: {}): string?
		call:answer()
		call:tts("Hello.")
		return "_"
	end,
}
