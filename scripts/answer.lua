-- answer: answer the call (Kazoo's cf_answer). Continues to "_".
return {
	description = "Answer the call.",
	schema = { type = "object", properties = {} },
	handle = function(call, data)
		call:answer()
	end,
}
