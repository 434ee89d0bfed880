-- Test module: a script bug (writing into a document read, which is
-- frozen) after the caller hung up is still reported as an error; only the
-- "hangup" error that ends verbs is not.
return {
	description = "Test: a bug after the hang-up is reported.",
	handle = function(call, data)
		call:play("long-message")
		local account = call:account()
		account.name = "changed"
	end,
}
