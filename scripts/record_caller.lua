-- record_caller: answer and record what the caller says, then continue
-- (Kazoo's cf_record_caller: kapps_call_command:b_record of the caller's
-- leg, stored to `url`).
--
-- Data fields (code defaults):
-- * `url`: where the recording is stored (PUT or POST, `method`, default
--   "put"). Without one it is stored in the account; a URL that is not
--   http(s) or ftp(s) is refused: nothing is recorded and the call
--   continues.
-- * `format` ("mp3"; "wav"): the recording is named <call id>.<format>.
-- * `time_limit` (3600 s; at most the system's 3600).
--
-- The recording ends at any DTMF digit, the time limit or a hang-up.
-- Exits: always "_".
--
-- Gap: the upload to `url` (and its `method`) is not modelled: the
-- recording is only named and traced.
local kazoo = require("kazoo")

local MAX_TIME_LIMIT_S = 3600

local function storable(url: string?): boolean
	if not url then
		return true
	end
	local scheme = string.match(url, "^(%a+)://")
	scheme = scheme and string.lower(scheme)
	return scheme == "http" or scheme == "https" or scheme == "ftp" or scheme == "ftps"
end

return {
	description = "Record the caller, then continue.",
	schema = {
		type = "object",
		properties = {
			format = { type = "string", enum = { "mp3", "wav" } },
			method = { type = "string", enum = { "put", "post" }, default = "put" },
			time_limit = { type = "integer", minimum = 5, maximum = 10800, default = 3600 },
			url = { type = "string", format = "uri" },
		},
	},
	handle = function(call, data)
		local url = kazoo.string(data.url)
		if not storable(url) then
			call:log("warning", "record_caller: cannot store the recording at " .. tostring(url) .. "; continuing")
			return nil
		end
		call:answer()
		local format = kazoo.string(data.format)
		if format ~= "mp3" and format ~= "wav" then
			format = "mp3"
		end
		local limit = math.min(kazoo.integer(data.time_limit, MAX_TIME_LIMIT_S) :: number, MAX_TIME_LIMIT_S)
		call:record({
			time_limit_s = limit,
			terminators = kazoo.ALL_DIGITS,
			name = call.call_id .. "." .. format,
		})
		return nil
	end,
}
