-- Voicemail boxes for the voicemail module (Kazoo's cf_voicemail mailbox
-- profile, kvm_messages and kzd_box_message), kept apart so that the module
-- reads as the call flow.
--
-- Documents: `vmboxes/<id>.json` (Kazoo's vmbox fields: mailbox, pin,
-- require_pin, owner_id, is_setup, check_if_owner, skip_greeting,
-- skip_instructions, skip_envelope, media.unavailable,
-- media.temporary_unavailable, timezone, not_configurable,
-- oldest_message_first, save_after_notify, delete_after_notify, ...) with
-- the messages in its `messages` array (Kazoo 3.x's layout; Kazoo 4+ keeps
-- one document per message, same metadata). Recorded greetings and names
-- become `media/<id>.json` documents.
--
-- Kazoo's configuration (system config `callflow`, account config `keys`)
-- is read from the account document (account.json) under `configs`, as
-- Kazoo's config documents would hold it:
--   "configs": {
--     "callflow": {"operator_key": "0",
--                  "voicemail": {"max_message_count": 100, "min_message_size": 500,
--                                "max_message_length": 500, "max_login_attempts": 3,
--                                "max_pin_length": 6, "max_box_number_length": 15}},
--     "keys": {"voicemail": {"operator": "0", "login": "*", ...}}
--   }
local kazoo = require("kazoo")

local vmbox = {}

-- Kazoo's timestamps are Gregorian seconds (since year 0).
vmbox.UNIX_EPOCH_IN_GREGORIAN = 62167219200

-- Kazoo's default keys (cf_voicemail's #keys{}), and the names under which
-- the `keys` config overrides them (populate_keys/1; forward and the
-- temporary greeting keys cannot be overridden there).
local DEFAULT_KEYS = {
	operator = "0",
	login = "*",
	-- record review
	save = "1",
	listen = "2",
	record = "3",
	-- main menu
	hear_new = "1",
	hear_saved = "2",
	configure = "5",
	exit = "#",
	-- settings menu
	rec_unavailable = "1",
	rec_name = "2",
	set_pin = "3",
	rec_temporary_unavailable = "4",
	del_temporary_unavailable = "5",
	return_main = "0",
	-- after a message
	keep = "1",
	replay = "2",
	forward = "3",
	prev = "4",
	next = "6",
	delete = "7",
	-- greeting: continue to the next callflow node (none by default)
	continue = nil,
}
local KEY_CONFIG_NAMES = {
	operator = "operator",
	login = "login",
	save = "save",
	listen = "listen",
	record = "record",
	hear_new = "hear_new",
	hear_saved = "hear_saved",
	configure = "configure",
	exit = "exit",
	rec_unavailable = "record_unavailable",
	rec_name = "record_name",
	set_pin = "set_pin",
	return_main = "return_main_menu",
	keep = "keep",
	replay = "replay",
	prev = "prev",
	next = "next",
	delete = "delete",
	continue = "continue",
}

-- A deep copy of a (read-only) document, to change and save.
vmbox.copy = kazoo.copy

-- Whether two JSON-like values are equal.
function vmbox.equal(a: any, b: any): boolean
	if type(a) ~= "table" or type(b) ~= "table" then
		return a == b
	end
	for k, v in a do
		if not vmbox.equal(v, b[k]) then
			return false
		end
	end
	for k in b do
		if a[k] == nil then
			return false
		end
	end
	return true
end

-- A document, or nil (also for ids that are not valid document ids).
function vmbox.doc(call, doc_type: string, id: any): any
	if type(id) ~= "string" or id == "" then
		return nil
	end
	local ok, doc = pcall(call.doc, call, doc_type, id)
	if ok then
		return doc
	end
	return nil
end

-- A value of Kazoo's configuration: configs.<category>.<path...> of the
-- account document, else `default`.
function vmbox.config(call, category: string, path: { string }, default: any): any
	local account = call:account()
	local node = type(account.configs) == "table" and account.configs[category] or nil
	for _, key in path do
		if type(node) ~= "table" then
			return default
		end
		node = node[key]
	end
	if node == nil then
		return default
	end
	return node
end

function vmbox.config_integer(call, path: { string }, default: number): number
	return kazoo.integer(vmbox.config(call, "callflow", path, nil), default) :: number
end

-- The voicemail keys: Kazoo's defaults, or the `keys` config's `voicemail`.
function vmbox.keys(call, defaults_only: boolean?): { [string]: string }
	local keys = table.clone(DEFAULT_KEYS)
	if defaults_only then
		return keys
	end
	local config = vmbox.config(call, "keys", { "voicemail" }, nil)
	if type(config) ~= "table" then
		return keys
	end
	for name, config_name in KEY_CONFIG_NAMES do
		local value = config[config_name]
		if type(value) == "number" then
			value = tostring(value)
		end
		if type(value) == "string" and value ~= "" then
			keys[name] = value
		end
	end
	return keys
end

-- The user owning the calling device (Kazoo's kapps_call:owner_id), or nil.
function vmbox.call_owner(call): string?
	local device = vmbox.doc(call, "devices", call.calling_device)
	if device then
		return kazoo.string(device.owner_id)
	end
	return nil
end

-- The vmbox documents owned by a user, by id.
local function owned_boxes(call, owner_id: string): { any }
	local boxes = {}
	for _, doc in call:docs("vmboxes") do
		if doc.owner_id == owner_id then
			table.insert(boxes, doc)
		end
	end
	return boxes
end

-- The box for a check or compose without an `id` and without a capture
-- group: the caller's own box (Kazoo's get_user_mailbox_doc).
local function user_mailbox_doc(call, data): any
	local owner = vmbox.call_owner(call)
	if not owner then
		return nil
	end
	local boxes = owned_boxes(call, owner)
	if #boxes == 0 then
		return nil
	end
	if #boxes == 1 and kazoo.boolean(data.single_mailbox_login, false) then
		return boxes[1]
	end
	if not kazoo.boolean(data.callerid_match_login, false) then
		return nil
	end
	local caller = call.from
	for _, box in boxes do
		if kazoo.string(box.mailbox) == caller then
			return box
		end
	end
	return nil
end

-- The node's box (Kazoo's get_mailbox_doc): `id`, else the box whose
-- mailbox number is the capture group, else the caller's own box.
local function mailbox_doc(call, data): any
	local id = kazoo.string(data.id)
	if id then
		return vmbox.doc(call, "vmboxes", id)
	end
	local captured = kazoo.string(call.capture_group)
	if captured then
		for _, doc in call:docs("vmboxes") do
			if kazoo.string(doc.mailbox) == captured then
				return doc
			end
		end
		return nil
	end
	return user_mailbox_doc(call, data)
end

-- The box whose number is `digits` (compared as integers, like Kazoo's
-- listing_by_mailbox view); nil when none, or more than one.
function vmbox.find_by_number(call, digits: string): any
	local wanted = tonumber(digits) or 0
	local found = nil
	for _, doc in call:docs("vmboxes") do
		if tonumber(doc.mailbox) == wanted then
			if found then
				return nil
			end
			found = doc
		end
	end
	return found
end

-- The time zone to say dates in: the box's, else its owner's, else the
-- account's, else UTC.
local function timezone(call, doc, owner): string
	local tz = kazoo.string(doc.timezone)
	if tz and tz ~= "inherit" then
		return tz
	end
	if owner and kazoo.string(owner.timezone) then
		return owner.timezone
	end
	return kazoo.string(call:account().timezone, "UTC") :: string
end

-- Non-deleted messages (Kazoo's kvm_messages:count: new + saved).
function vmbox.count(messages: { any }): number
	local n = 0
	for _, message in messages do
		local folder = vmbox.folder(message)
		if folder == "new" or folder == "saved" then
			n += 1
		end
	end
	return n
end

function vmbox.folder(message): string
	return kazoo.string(message.folder, "new") :: string
end

-- The box's messages as stored now (this call's own writes included).
function vmbox.messages(call, box_id: string): { any }
	local doc = vmbox.doc(call, "vmboxes", box_id)
	if doc and type(doc.messages) == "table" then
		return vmbox.copy(doc.messages)
	end
	return {}
end

-- The messages of a folder, newest first (oldest first with the box's
-- oldest_message_first), as Kazoo lists them.
function vmbox.folder_messages(call, box, folder: string): { any }
	local list = {}
	for index, message in vmbox.messages(call, box.id) do
		if vmbox.folder(message) == folder then
			table.insert(list, { index = index, message = message })
		end
	end
	table.sort(list, function(a, b)
		local ta = tonumber(a.message.timestamp) or 0
		local tb = tonumber(b.message.timestamp) or 0
		if ta ~= tb then
			return ta > tb
		end
		return a.index > b.index
	end)
	local out = {}
	for _, entry in list do
		table.insert(out, entry.message)
	end
	if box.oldest_message_first then
		local reversed = {}
		for i = #out, 1, -1 do
			table.insert(reversed, out[i])
		end
		out = reversed
	end
	return out
end

-- Changes the box document with `change(doc)` atomically (call:update_doc:
-- a message another call left meanwhile is kept, `change` then runs again
-- on the box as it is now). False when there is no such box.
function vmbox.update(call, box_id: string, change: (any) -> ()): boolean
	if not vmbox.doc(call, "vmboxes", box_id) then
		return false
	end
	local saved = call:update_doc("vmboxes", box_id, function(doc)
		if not doc then
			return nil
		end
		change(doc)
		return doc
	end)
	return saved ~= nil
end

-- Appends a message to the box's `messages`.
function vmbox.add_message(call, box_id: string, message): boolean
	return vmbox.update(call, box_id, function(doc)
		if type(doc.messages) ~= "table" then
			doc.messages = {}
		end
		table.insert(doc.messages, message)
	end)
end

-- Moves a message (by media_id) to `folder`.
function vmbox.set_folder(call, box_id: string, media_id: string, folder: string): boolean
	return vmbox.update(call, box_id, function(doc)
		for _, message in (type(doc.messages) == "table" and doc.messages or {}) do
			if message.media_id == media_id then
				message.folder = folder
			end
		end
	end)
end

-- Kazoo's #mailbox{} for a box that does not exist: every default, Kazoo's
-- default keys and interdigit timeout.
function vmbox.missing(call): any
	return {
		exists = false,
		check_if_owner = true,
		keys = vmbox.keys(call, true),
		interdigit = 2000,
		max_login_attempts = vmbox.config_integer(call, { "voicemail", "max_login_attempts" }, 3),
		pin = "",
		mailbox_number = "",
	}
end

-- The mailbox profile (Kazoo's get_mailbox_profile) of a document.
function vmbox.profile_of(call, doc, data, check_if_owner_default: boolean): any
	local owner_id = kazoo.string(doc.owner_id)
	local owner = owner_id and vmbox.doc(call, "users", owner_id) or nil
	if owner_id and not owner then
		-- Kazoo: "owner no longer exists"
		owner_id = nil
	end
	local media = type(doc.media) == "table" and doc.media or {}
	local name_media = nil
	if owner and type(owner.media) == "table" then
		name_media = kazoo.string(owner.media.name)
	end
	if not name_media then
		name_media = kazoo.string(media.name)
	end
	local max_length = kazoo.integer(data.max_message_length, 0) :: number
	if max_length <= 0 then
		max_length = kazoo.integer(doc.max_message_length, 0) :: number
	end
	if max_length <= 0 then
		max_length = vmbox.config_integer(call, { "voicemail", "max_message_length" }, 500)
	end
	local after_notify = "nothing"
	if kazoo.boolean(doc.save_after_notify, false) then
		after_notify = "save"
	elseif kazoo.boolean(doc.delete_after_notify, false) then
		after_notify = "delete"
	end
	local messages = type(doc.messages) == "table" and doc.messages or {}
	local max_count = kazoo.integer(doc.max_message_count, nil)
	if max_count == nil then
		max_count = vmbox.config_integer(call, { "voicemail", "max_message_count" }, 100)
	end
	return {
		exists = true,
		id = doc.id,
		mailbox_number = kazoo.string(doc.mailbox, call.to) :: string,
		pin = kazoo.string(doc.pin, "") :: string,
		require_pin = kazoo.boolean(doc.require_pin, false),
		check_if_owner = kazoo.boolean(doc.check_if_owner, check_if_owner_default),
		owner_id = owner_id,
		is_setup = kazoo.boolean(doc.is_setup, false),
		skip_greeting = kazoo.boolean(doc.skip_greeting, false),
		skip_instructions = kazoo.boolean(doc.skip_instructions, false),
		skip_envelope = kazoo.boolean(doc.skip_envelope, false),
		unavailable = kazoo.string(media.unavailable),
		temporary_unavailable = kazoo.string(media.temporary_unavailable),
		name_media = name_media,
		timezone = timezone(call, doc, owner),
		message_count = vmbox.count(messages),
		max_message_count = max_count,
		max_message_length = max_length,
		min_message_length = vmbox.config_integer(call, { "voicemail", "min_message_size" }, 500),
		max_login_attempts = vmbox.config_integer(call, { "voicemail", "max_login_attempts" }, 3),
		keys = vmbox.keys(call),
		after_notify = after_notify,
		interdigit = kazoo.integer(doc.interdigit_timeout, kazoo.integer(data.interdigit_timeout, 2000)),
		play_greeting_intro = kazoo.boolean(doc.play_greeting_intro, false),
		use_person_not_available = kazoo.boolean(doc.use_person_not_available, false),
		not_configurable = kazoo.boolean(doc.not_configurable, false),
		oldest_message_first = kazoo.boolean(doc.oldest_message_first, false),
		operator_number = kazoo.string(doc.operator_number),
	}
end

-- The node's mailbox profile; `check_if_owner_default` is Kazoo's default
-- for check_if_owner (whether the previous module was a device, or none).
function vmbox.profile(call, data, check_if_owner_default: boolean): any
	local doc = mailbox_doc(call, data)
	if not doc then
		return vmbox.missing(call)
	end
	return vmbox.profile_of(call, doc, data, check_if_owner_default)
end

return vmbox
