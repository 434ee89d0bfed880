-- Fax hand-offs shared by receive_fax and faxbox: the T.38 option Kazoo
-- sends the fax application, and its schema.
local kazoo = require("kazoo")

local fax = {}

-- `media.fax_option` as Kazoo sends it: "auto", "true" or another string;
-- nil when absent or empty (props:filter_empty drops false, "false" and
-- "0").
function fax.option(media: any): string?
	if type(media) ~= "table" then
		return nil
	end
	local value = media.fax_option
	if type(value) == "boolean" then
		value = tostring(value)
	end
	if value == "" or value == "false" or value == "0" then
		return nil
	end
	return kazoo.string(value)
end

-- The schema of a node's `media` object.
fax.MEDIA_SCHEMA = {
	type = "object",
	properties = {
		fax_option = {
			oneOf = {
				{ type = "string", enum = { "auto", "false", "true" } },
				{ type = "boolean" },
			},
		},
	},
}

return fax
