-- ring_group_toggle: log the caller in or out of the ring groups of a
-- callflow (Kazoo's cf_ring_group_toggle, kazoo-callflows.md §3.1).
--
-- Data:
-- * `action` (required): "login" (ring me again) or "logout" (skip me).
-- * `callflow_id` (required): the callflow whose ring_group nodes to change.
--
-- It answers, then walks that callflow's flow (children in document order) and,
-- at every ring_group node, looks for a member {endpoint_type: "user", id:
-- <the caller's user>}: the caller's user is the call variable "owner_id"
-- when set, else the owner of the calling device. Only user members are
-- toggled, as in Kazoo (a device member is never matched). For each
-- ring_group node it plays "agent-logged_in" / "agent-logged_out" when the
-- caller is a member, else "agent-invalid_choice". Logout sets the member's
-- disable_until to 66269664000 (year 2100 in gregorian seconds), login to 0.
--
-- Deviation: Kazoo saves the changed members back into the callflow
-- document (reversing their order as a side effect); modules cannot save
-- callflows here, so the values go to the state document
-- ring_group_toggles/<callflow_id> = {users = {"<user id>": disable_until}},
-- which the ring_group module reads for user members of that callflow. It
-- is written only when the caller was found in some ring_group node.
--
-- Exits: "_". An unknown callflow_id (or action) makes Kazoo's module crash:
-- here too an error is raised, and the call continues with "_".
local kazoo = require("kazoo")
local endpoints = require("endpoints")

local LOGIN = 0
local LOGOUT = 66269664000 -- 2100-01-01 00:00:00 in gregorian seconds

-- Visits the ring_group nodes of a flow in walk order: the node, then its
-- children by key.
local function walk(node, visit)
	if type(node) ~= "table" then
		return
	end
	if node.module == "ring_group" then
		visit(node)
	end
	if type(node.children) == "table" then
		for _, key in json.keys(node.children) do
			walk(node.children[key], visit)
		end
	end
end

return {
	description = "Log the caller in or out of a callflow's ring groups.",
	schema = {
		type = "object",
		required = { "action", "callflow_id" },
		properties = {
			action = { type = "string", enum = { "login", "logout" } },
			callflow_id = { type = "string" },
		},
	},
	handle = function(call, data)
		call:answer()
		local callflow_id = kazoo.string(data.callflow_id)
		local disable_until
		if data.action == "login" then
			disable_until = LOGIN
		elseif data.action == "logout" then
			disable_until = LOGOUT
		else
			error("ring_group_toggle: action must be login or logout, not " .. tostring(data.action), 0)
		end
		local callflow = callflow_id and call:doc("callflows", callflow_id)
		if not callflow then
			error("ring_group_toggle: no callflow " .. tostring(callflow_id), 0)
		end
		local owner = endpoints.caller_owner(call)
		local found_any = false
		walk(callflow.flow, function(node)
			local found = false
			local members = type(node.data) == "table" and node.data.endpoints
			for _, member in (type(members) == "table" and members or {}) do
				if type(member) == "table" and member.endpoint_type == "user" and owner ~= nil and member.id == owner then
					found = true
				end
			end
			if not found then
				call:play("agent-invalid_choice")
			elseif disable_until == LOGIN then
				call:play("agent-logged_in")
			else
				call:play("agent-logged_out")
			end
			found_any = found_any or found
		end)
		if found_any then
			-- Atomic: another member toggling meanwhile is kept.
			call:update_doc("ring_group_toggles", callflow_id :: string, function(stored)
				local state = stored or {}
				local users = {}
				if type(state.users) == "table" then
					for k, v in state.users do
						users[k] = v
					end
				end
				users[owner :: string] = disable_until
				return { users = users }
			end)
		end
		return nil
	end,
}
