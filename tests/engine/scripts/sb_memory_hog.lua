-- Sandbox test: a module that fills the VM's heap with a table that only
-- grows; its memory budget must end it, and nothing of it may reach the
-- next module or the next call.
return {
	description = "Sandbox test: sb_memory_hog.",
	handle = function(call, data)
		local t = {}
		local i = 0
		while true do
			i = i + 1
			t[i] = { i, i, i, i }
		end
	end,
}
