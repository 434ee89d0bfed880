-- Test module: the `re` helper (Kazoo regex dialect).
return {
	description = "Test: re.match and re.test.",
	handle = function(call, data)
		local m = re.match("^\\*97(?P<box>\\d*)$", "*971001")
		call:log("info", "match=" .. m.match .. " group=" .. m.groups[1] .. " named=" .. m.named.box)
		call:log("info", "test=" .. tostring(re.test("^1\\d{3}$", "1234")) .. "," .. tostring(re.test("^1\\d{3}$", "12345")))
		local ok, err = pcall(re.test, "(?=x)", "x")
		call:log("info", "invalid: " .. tostring(ok) .. " " .. tostring(err))
		print("printed", 42)
		call:emit({ event = "test.custom", answer = 42, list = { 1, 2 }, map = { b = 2, a = 1 } })
	end,
}
