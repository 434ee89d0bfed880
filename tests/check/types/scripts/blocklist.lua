--!strict
-- blocklist: callers listed in data.numbers hear a prompt and are hung up;
-- everyone else goes on to the child "_".
local numbers = require("numbers")
local spelling = require("spelling")

local function listed(list: { string }, number: string): boolean
	return table.find(list, number) ~= nil
end

return {
	handle = function(call: Call, data: { numbers: { string } }): string?
		local hit: number = listed(data.numbers, numbers.normalize(call.from))
		if hit then
			call:answr()
			call:play(403)
			call:hangup()
			return nil
		end
		return "_"
	end,
}
