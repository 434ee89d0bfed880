-- A counter made by a factory while the script loads: the state lives in
-- the factory's local, which the kept closure assigns.
local function counter()
	local n = 0
	return function()
		n += 1
		return n
	end
end
local next_id = counter()
return {
	handle = function(call, data)
		call:log("info", "id=" .. next_id())
	end,
}
