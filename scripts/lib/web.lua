-- Web requests for the pivot, webhook and nomorobo modules: form encoding
-- (application/x-www-form-urlencoded) as Kazoo's kz_http_util builds it,
-- and HTTP basic authentication.
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

local BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard base64 (RFC 4648, with "=" padding).
function web.base64(data: string): string
	local out = {}
	for i = 1, #data, 3 do
		local a, b, c = string.byte(data, i, i + 2)
		local n = bit32.bor(bit32.lshift(a, 16), bit32.lshift(b or 0, 8), c or 0)
		for j = 0, 3 do
			if j <= 1 or (j == 2 and b) or (j == 3 and c) then
				local index = bit32.band(bit32.rshift(n, 18 - 6 * j), 63) + 1
				table.insert(out, string.sub(BASE64, index, index))
			else
				table.insert(out, "=")
			end
		end
	end
	return table.concat(out)
end

-- The Authorization header value of HTTP basic authentication.
function web.basic_auth(username: string, password: string): string
	return "Basic " .. web.base64(username .. ":" .. password)
end

return web
