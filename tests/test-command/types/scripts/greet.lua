--!strict
-- greet: welcomes the caller, then sends callers listed in `vip` to the
-- child "vip" and everyone else to "_".
--
-- A custom module: this file adds the module `greet` (a file named like a
-- built-in module would replace it). `callflow.d.luau` gives your editor
-- the types of `call` (see README.md, "Editing modules").

type Data = {
	company: string,
	vip: { string }?,
}

return {
	description = "Welcome the caller; VIP callers go to the child \"vip\".",
	schema = {
		type = "object",
		required = { "company" },
		properties = {
			company = { type = "string", minLength = 1 },
			vip = { type = "array", items = { type = "string" } },
		},
	},
	handle = function(call: Call, data: Data): string?
		call:answer()
		call:tts("Welcome to " .. data.company .. ".")
		local _vips: string = #(data.vip or {})
		for _, number in data.vip or {} do
			if call.from == number then
				call:log("info", "VIP caller " .. number)
				return "vip"
			end
		end
		return nil
	end,
}
