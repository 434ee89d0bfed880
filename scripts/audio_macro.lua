-- audio_macro: play a sequence of prompts, files, speech and tones (Kazoo's
-- cf_audio_macro).
--
-- Data (CODE defaults):
-- * `macros` ([]): the list, played in order; each has `macro`:
--   - "play": `id` (media id, URL or tone_stream://; none: skipped),
--     `terminators`;
--   - "prompt": `id` (a system prompt), `language`;
--   - "say": `text`, `type`, `method`, `language`, `gender`;
--   - "tts": `text`, `voice`, `language`, `terminators`;
--   - "tone": `frequencies` (list of Hz), `duration_on`, `duration_off`
--     (ms), `volume`, `repeat`: played as
--     "tone_stream://[v=<volume>;][l=<repeat>;]%(<on>,<off>,<f1>,<f2>...)"
--     as Kazoo's ecallmgr builds it.
-- * `language`, `terminators` (all digits): fallbacks for the entries that
--   leave them out.
--
-- As in Kazoo, "say" and "tts" use their arguments up to the first missing
-- one (a say without `type` says the text with the defaults, whatever
-- `method` says; a tts without `voice` drops `language` and `terminators`);
-- a say or tts without text is skipped. A terminator stops the entry playing
-- and the next one starts. Every entry is checked before anything plays: an
-- unknown `macro` makes Kazoo's module crash, so nothing plays and the call
-- continues to "_" with an `error` event.
--
-- Exits: continues to "_" (also with no entries); a hang-up stops.
--
-- Deviations: the API's `play` has no language, so a prompt's `language` is
-- not applied (prompts play in the call's language); `say` has no gender,
-- so `gender` is ignored. A tone without frequencies or durations is skipped
-- with a warning (Kazoo would send a broken tone_stream).
local kazoo = require("kazoo")

local STRING = { type = "string" }
local TERMINATORS = kazoo.DIGITS_SCHEMA

local MACRO = {
	type = "object",
	required = { "macro" },
	properties = {
		macro = { type = "string", enum = { "play", "prompt", "say", "tts", "tone" } },
		id = STRING,
		text = STRING,
		type = STRING,
		method = STRING,
		language = STRING,
		gender = STRING,
		voice = STRING,
		terminators = TERMINATORS,
		frequencies = { type = "array", items = { type = "integer" } },
		duration_on = { type = "integer" },
		duration_off = { type = "integer" },
		volume = { type = "integer", minimum = 0, maximum = 100 },
		["repeat"] = { type = "integer" },
	},
}

-- kz_json:find(key, [macro, data], default).
local function find(key, macro, data, default)
	if macro[key] ~= nil then
		return macro[key]
	end
	if data[key] ~= nil then
		return data[key]
	end
	return default
end

local function text_of(value)
	if type(value) == "number" then
		return tostring(value)
	end
	return kazoo.string(value)
end

local function tone_stream(macro)
	local freqs = macro.frequencies
	local on, off = text_of(macro.duration_on), text_of(macro.duration_off)
	if type(freqs) ~= "table" or #freqs == 0 or on == nil or off == nil then
		return nil
	end
	local list = {}
	for _, f in freqs do
		table.insert(list, tostring(f))
	end
	local prefix = ""
	if macro.volume ~= nil then
		prefix = prefix .. "v=" .. tostring(macro.volume) .. ";"
	end
	if macro["repeat"] ~= nil then
		prefix = prefix .. "l=" .. tostring(macro["repeat"]) .. ";"
	end
	return "tone_stream://" .. prefix .. "%(" .. on .. "," .. off .. "," .. table.concat(list, ",") .. ")"
end

-- The steps to play, each a function(call) -> outcome, built first as Kazoo
-- builds the whole macro before sending it.
local function build(call, data)
	local steps = {}
	local macros = type(data.macros) == "table" and data.macros or {}
	for i, macro in macros do
		local kind = type(macro) == "table" and macro.macro or nil
		if kind == "play" then
			local id = kazoo.string(macro.id)
			if id then
				local terminators = find("terminators", macro, data, kazoo.ALL_DIGITS)
				table.insert(steps, function()
					return call:play(id, { terminators = terminators })
				end)
			else
				call:log("info", "audio_macro: invalid play command, skipping")
			end
		elseif kind == "prompt" then
			local id = kazoo.string(macro.id)
			if id then
				table.insert(steps, function()
					return call:play(id)
				end)
			else
				call:log("info", "audio_macro: prompt without id, skipping")
			end
		elseif kind == "say" then
			local args = { text_of(macro.text), kazoo.string(macro.type), kazoo.string(macro.method),
				kazoo.string(find("language", macro, data)) }
			if args[1] then
				local opts = { type = args[2] }
				if args[2] then
					opts.method = args[3]
					if args[3] then
						opts.language = args[4]
					end
				end
				table.insert(steps, function()
					return call:say(args[1], opts)
				end)
			else
				call:log("info", "audio_macro: invalid say macro, skipping")
			end
		elseif kind == "tts" then
			local text = text_of(macro.text)
			if text then
				local opts = {}
				local voice = kazoo.string(macro.voice)
				if voice then
					opts.voice = voice
					local language = kazoo.string(find("language", macro, data))
					if language then
						opts.language = language
						opts.terminators = find("terminators", macro, data, kazoo.ALL_DIGITS)
					end
				end
				table.insert(steps, function()
					return call:tts(text, opts)
				end)
			else
				call:log("info", "audio_macro: invalid TTS macro, skipping")
			end
		elseif kind == "tone" then
			local stream = tone_stream(macro)
			if stream then
				table.insert(steps, function()
					return call:play(stream)
				end)
			else
				call:log("warning", "audio_macro: tone without frequencies or durations, skipping")
			end
		else
			error(string.format("audio_macro: entry %d has an unknown macro %s", i, tostring(kind)))
		end
	end
	return steps
end

return {
	description = "Play a sequence of prompts, media, speech and tones.",
	schema = {
		type = "object",
		properties = {
			macros = { type = "array", items = MACRO, default = {} },
			language = STRING,
			terminators = TERMINATORS,
		},
	},
	handle = function(call, data)
		local steps = build(call, data)
		for _, step in steps do
			local outcome = step()
			if outcome.reason == "hangup" then
				return call:stop()
			end
		end
	end,
}
