-- Assigned only while the script loads (after the functions that read it
-- were made): allowed, it cannot change afterwards.
local prefix
local function label(n)
	return prefix .. n
end
prefix = "call-"
local limits = { max = 3 }
return {
	handle = function(call, data)
		call:log("info", label(limits.max))
	end,
}
