-- record_call: start or stop recording the whole call (Kazoo's
-- cf_record_call, kapps_call:start_recording/stop_recording).
--
-- Data fields (code defaults):
-- * `action` ("start"): "stop" stops the recording; anything else starts it.
-- * `label` (the callflow's name): Kazoo records the origin
--   "callflow : <label>" with the recording.
-- * `format`, `url`, `method` ("put"), `time_limit` (3600 s),
--   `record_on_answer` (false), `record_on_bridge` (false),
--   `record_min_sec`, `record_sample_rate`, `media_name`, `origin`,
--   `should_follow_transfer` (true): where and how the recording is stored
--   and when it begins.
--
-- Exits: always "_".
--
-- Gaps: call:record_call takes only "start" or "stop": the recording
-- starts at once, and the storage settings above (format, url, time limit,
-- start on answer/bridge, minimum length, sample rate, name, label) cannot
-- be passed; when the node sets any of them a debug line says they were not
-- applied.
local kazoo = require("kazoo")

local UNSUPPORTED = {
	"format",
	"label",
	"media_name",
	"method",
	"origin",
	"record_min_sec",
	"record_on_answer",
	"record_on_bridge",
	"record_sample_rate",
	"should_follow_transfer",
	"time_limit",
	"url",
}

return {
	description = "Start or stop recording the call.",
	schema = {
		type = "object",
		required = { "action" },
		properties = {
			action = { type = "string", enum = { "start", "stop" }, default = "start" },
			format = { type = "string", enum = { "mp3", "wav" } },
			label = { type = "string" },
			media_name = { type = "string" },
			method = { type = "string", enum = { "put", "post" }, default = "put" },
			origin = { type = "string" },
			record_min_sec = { type = "integer" },
			record_on_answer = { type = "boolean", default = false },
			record_on_bridge = { type = "boolean", default = false },
			record_sample_rate = { type = "integer" },
			should_follow_transfer = { type = "boolean", default = true },
			time_limit = { type = "integer", minimum = 5, maximum = 10800, default = 3600 },
			url = { type = "string", format = "uri" },
		},
	},
	handle = function(call, data)
		local action = if kazoo.string(data.action) == "stop" then "stop" else "start"
		if action == "start" then
			local ignored = {}
			for _, key in UNSUPPORTED do
				if data[key] ~= nil then
					table.insert(ignored, key)
				end
			end
			if #ignored > 0 then
				call:log("debug", "record_call: not applied: " .. table.concat(ignored, ", "))
			end
		end
		call:record_call(action)
		return nil
	end,
}
