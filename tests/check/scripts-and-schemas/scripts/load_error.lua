local settings = nil
local timeout = settings.timeout
return {
	handle = function(call, data) end,
}
