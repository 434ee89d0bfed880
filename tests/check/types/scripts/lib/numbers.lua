--!strict
-- numbers: a strict helper.
local M = {}

function M.normalize(number: string): string
	return (string.gsub(number, "[^0-9+]", ""))
end

function M.count(list: { string }): number
	return tostring(#list)
end

return M
