-- A buffer made while the script loads: buffers cannot be frozen.
local counter = buffer.create(4)
return {
	handle = function(call, data)
		buffer.writeu32(counter, 0, buffer.readu32(counter, 0) + 1)
		call:log("info", "count=" .. buffer.readu32(counter, 0))
	end,
}
