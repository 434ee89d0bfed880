-- metaflows/record_call: start, stop or toggle recording the whole call
-- (Kazoo's konami_record_call).
--
-- Data (code defaults):
-- * `action` ("start"): "start", "stop", or "toggle" (stop when a recording
--   runs, else start); Kazoo reads anything but "stop" as "start", and the
--   schema's "mask"/"unmask" (pausing the recording) are logged, not
--   applied.
-- * `format`, `url`, `time_limit`, ...: storage settings, accepted, not
--   applied (call:record_call starts and stops only).
-- Exit: continue to "_".
local kazoo = require("kazoo")

return {
	description = "Start, stop or toggle recording the call.",
	schema = {
		type = "object",
		properties = {
			action = { type = "string", enum = { "start", "stop", "toggle", "mask", "unmask" }, default = "start" },
			format = { type = "string", enum = { "mp3", "wav" } },
			label = { type = "string" },
			media_name = { type = "string" },
			method = { type = "string" },
			origin = { type = "string" },
			record_min_sec = { type = "integer" },
			record_on_answer = { type = "boolean" },
			record_on_bridge = { type = "boolean" },
			record_sample_rate = { type = "integer" },
			should_follow_transfer = { type = "boolean" },
			time_limit = { type = "integer" },
			url = { type = "string", format = "uri" },
		},
	},
	handle = function(call, data)
		local action = kazoo.string(data.action, "start")
		if action == "mask" or action == "unmask" then
			call:log("info", "record_call: " .. action .. " is not modelled")
			return nil
		elseif action == "toggle" then
			action = if call:recording() then "stop" else "start"
		elseif action ~= "stop" then
			action = "start"
		end
		call:record_call(action)
		return nil
	end,
}
