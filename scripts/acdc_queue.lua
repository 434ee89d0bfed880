-- acdc_queue: a call-center agent logs into or out of one queue (Kazoo's
-- cf_acdc_queue; documents in scripts/lib/acdc.lua).
--
-- Data: `action`* ("login", "logout"), `id`* (the queue).
--
-- The agent is found as acdc_agent finds it. Login: the queue is added to
-- those the agent works (a logged-out agent becomes ready), "agent-logged_in",
-- and the queue's waiting callers are woken. Logout: the queue is removed,
-- "agent-logged_out"; an agent logged out already: "agent-invalid_choice".
-- No agent: "agent-not_call_center_agent". Exit: "_".
local kazoo = require("kazoo")
local acdc = require("acdc")

return {
	description = "Log a call-center agent into or out of one queue.",
	schema = {
		type = "object",
		required = { "action", "id" },
		properties = {
			action = { type = "string", enum = { "login", "logout" } },
			id = { type = "string" },
		},
	},
	handle = function(call, data)
		call:answer()
		local agent = acdc.find_agent(call)
		if agent == nil then
			call:play("agent-not_call_center_agent")
			return "_"
		elseif agent == "multiple" then
			call:play("agent-invalid_choice")
			return "_"
		end
		local queue_id = kazoo.string(data.id, "") :: string
		local status = acdc.status(call, agent)
		local queues = {}
		for _, queue in status.queues do
			if queue ~= queue_id then
				table.insert(queues, queue)
			end
		end
		local action = kazoo.string(data.action, "")
		if action == "login" then
			table.insert(queues, queue_id)
			if status.status == "logged_out" then
				status.status = "ready"
				status.idle_since = call:now()
			end
			status.queues = queues
			acdc.save_status(call, agent, status)
			call:play("agent-logged_in")
			acdc.wake(call, { queue_id })
		elseif action == "logout" and status.status ~= "logged_out" then
			status.queues = queues
			acdc.save_status(call, agent, status)
			call:play("agent-logged_out")
		else
			call:play("agent-invalid_choice")
		end
		return "_"
	end,
}
