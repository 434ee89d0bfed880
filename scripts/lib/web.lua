-- Web requests for the pivot and webhook modules: form encoding
-- (application/x-www-form-urlencoded) as Kazoo's kz_http_util builds it.
local kazoo = require("kazoo")

local web = {}

-- Percent-encodes a string; a space becomes "+".
local function urlencode(s: string): string
	return (string.gsub(s, "[^%w%-%._~]", function(c)
		if c == " " then
			return "+"
		end
		return string.format("%%%02X", string.byte(c))
	end))
end

local function scalar(v: any): string
	if type(v) == "table" then
		return "" -- arrays of arrays and deeper nesting are flattened away
	end
	return tostring(v)
end

-- Form-encodes an ordered list of {name, value} (kz_http_util's
-- json_to_querystring): name=value; objects as name[key]=value (keys in
-- document order, nested objects likewise), lists as name[]=value.
function web.encode(params: { { any } }): string
	local parts = {}
	local function add(name: string, v: any)
		if type(v) == "table" then
			local keys = json.keys(v)
			if #v > 0 then
				for _, item in v do
					table.insert(parts, urlencode(name .. "[]") .. "=" .. urlencode(scalar(item)))
				end
			else
				for _, key in keys do
					add(name .. "[" .. key .. "]", v[key])
				end
			end
		else
			table.insert(parts, urlencode(name) .. "=" .. urlencode(tostring(v)))
		end
	end
	for _, p in params do
		add(p[1], p[2])
	end
	return table.concat(parts, "&")
end

-- Form-encodes a table, in sorted key order (see web.encode).
function web.querystring(data: { [string]: any }): string
	local params = {}
	for _, key in kazoo.sorted_keys(data) do
		table.insert(params, { key, data[key] })
	end
	return web.encode(params)
end

-- The URL with a query string added ("?" or, after an existing query, "&").
function web.with_query(url: string, query: string): string
	local sep = if string.find(url, "?", 1, true) then "&" else "?"
	return url .. sep .. query
end

return web
