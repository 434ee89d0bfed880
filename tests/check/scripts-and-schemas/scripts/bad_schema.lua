return {
	schema = "an object, please",
	handle = function(call, data) end,
}
