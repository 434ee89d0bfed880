-- Sandbox test: documents are shared read-only tables (one conversion per VM);
-- a script cannot change one for the calls after it.
return {
	description = "Sandbox: writing a document table.",
	handle = function(call)
		local user = call:doc("users", "alice")
		call:log("info", "before: " .. user.first_name)
		local tries = {
			function() user.first_name = "Mallory" end,
			function() rawset(user, "first_name", "Mallory") end,
			function() setmetatable(user, { __index = function() return "Mallory" end }) end,
			function() table.insert(call:doc("users", "alice"), "x") end,
		}
		for i, try in tries do
			local ok = pcall(try)
			call:log("info", "write " .. i .. ": " .. (if ok then "allowed" else "refused"))
		end
		call:log("info", "after: " .. call:doc("users", "alice").first_name)
	end,
}
