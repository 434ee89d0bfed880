-- nomorobo: branch on the caller's robocall score from Nomorobo (Kazoo's
-- cf_nomorobo, kazoo-callflows.md §3.1).
--
-- Data: `username` (required), `password`: the Nomorobo account, sent with
-- HTTP basic authentication.
--
-- It GETs https://api.nomorobo.com/v1/check?From=<caller>&To=<dialled>
-- (both as 10-digit NANP numbers when they are NANP numbers, Kazoo's
-- to_npan; otherwise as they are) and reads `score` (0.0 to 1.0) from the
-- JSON answer; the score is trunc(score * 10).
--
-- Children: integer keys ("0" .. "10") are score thresholds; "_" counts as
-- -1. Keys are sorted; the branch is the greatest key <= score, except
-- that the lowest key is taken when none is <= score (Kazoo's
-- nomorobo_branch starts from it). With children "0", "3", "6", "10": 0-2
-- -> "0", 3-5 -> "3", 6-9 -> "6", 10 -> "10".
-- Without a score (no response, a non-200 status, a body without a
-- numeric score): "_" when the node has it, else "0" when it has it, else
-- stop.
--
-- Deviations: a 200 answer whose body has no numeric score makes Kazoo's
-- module crash (the call then continues with "_"); here it counts as no
-- score (the same "_" when the node has one). Kazoo skips TLS certificate
-- checks for this request; call:http does not. Scenarios stub the request
-- (the `http` stubs cannot check headers: the trace shows the request,
-- not its Authorization header).
local kazoo = require("kazoo")
local web = require("web")

local URL = "https://api.nomorobo.com/v1/check"

-- Kazoo's knm_converters:to_npan.
local function to_npan(number)
	local m = re.match("^(?:\\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$", number)
	if m then
		return m.groups[1]
	end
	return number
end

-- The node's child keys as thresholds, sorted ("_" is -1).
local function thresholds(call)
	local keys = {}
	for _, key in call:children() do
		if key == "_" then
			table.insert(keys, -1)
		elseif re.test("^-?[0-9]+$", key) then
			table.insert(keys, tonumber(key) :: number)
		end
	end
	table.sort(keys)
	return keys
end

local function key_name(key)
	if key == -1 then
		return "_"
	end
	return tostring(key)
end

-- The score, or nil.
local function score(call, data)
	-- Spliced in as they are, as Kazoo does (binary:replace, no encoding).
	local url = URL .. "?From=" .. to_npan(call.from) .. "&To=" .. to_npan(call.number)
	local response = call:http({
		url = url,
		headers = {
			Authorization = web.basic_auth(kazoo.string(data.username, "") :: string, kazoo.string(data.password, "") :: string),
		},
	})
	if response.status ~= 200 then
		call:log("info", "nomorobo: no score (status " .. response.status .. ")")
		return nil
	end
	local body = json.decode(response.body)
	local value = type(body) == "table" and tonumber(body.score)
	if not value then
		call:log("info", "nomorobo: the answer has no score")
		return nil
	end
	return if value < 0 then math.ceil(value * 10) else math.floor(value * 10)
end

return {
	description = "Branch on the caller's robocall score from Nomorobo.",
	schema = {
		type = "object",
		required = { "username" },
		properties = {
			username = { type = "string", minLength = 1, maxLength = 1000 },
			password = { type = "string", minLength = 1, maxLength = 1000 },
		},
	},
	handle = function(call, data)
		local keys = thresholds(call)
		local s = score(call, data)
		if s == nil then
			if keys[1] == -1 then
				return nil
			elseif keys[1] == 0 then
				return "0"
			end
			call:log("info", "nomorobo: no default branch; stopping")
			return call:stop()
		end
		if #keys == 0 then
			-- Kazoo's nomorobo_branch has no clause for it: a crash.
			error("nomorobo: the node has no children to branch to", 0)
		end
		local branch = keys[1]
		for i = 2, #keys do
			if keys[i] <= s then
				branch = keys[i]
			end
		end
		call:log("info", string.format("nomorobo: score %d, branch %s", s, key_name(branch)))
		return key_name(branch)
	end,
}
