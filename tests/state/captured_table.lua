-- A table captured by handle, used as a cache.
local cache = {}
return {
	handle = function(call, data)
		cache.hits = (cache.hits or 0) + 1
		call:log("info", "hits=" .. cache.hits)
	end,
}
