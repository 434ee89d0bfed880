-- A forward-declared local that handle reassigns.
local greeting
greeting = "hello"
return {
	handle = function(call, data)
		call:log("info", "greeting=" .. greeting)
		greeting = greeting .. "!"
	end,
}
