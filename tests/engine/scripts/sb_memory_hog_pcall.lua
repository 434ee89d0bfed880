-- Sandbox test: the memory hog inside `pcall`, its table dropped each time
-- the error is caught: catching the memory budget's error must not let the
-- module go on.
return {
	description = "Sandbox test: sb_memory_hog_pcall.",
	handle = function(call, data)
		while true do
			pcall(function()
				local t = {}
				local i = 0
				while true do
					i = i + 1
					t[i] = { i, i, i, i }
				end
			end)
		end
	end,
}
