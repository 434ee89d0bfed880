-- acdc_agent: a call-center agent logs in or out, pauses or resumes
-- (Kazoo's cf_acdc_agent; documents in scripts/lib/acdc.lua).
--
-- Data: `action`* ("login", "logout", "paused" (or "pause"), "resume"),
-- `timeout` (s a pause lasts, 600; the capture group, when there is one,
-- gives it in minutes), `presence_id`, `presence_state` (read, not used).
--
-- The agent is the calling device's hot-desked user (a single one), else
-- its owner. It answers, then:
-- * no agent: "agent-not_call_center_agent"; several hot-desked users:
--   "agent-invalid_choice";
-- * logout: logged out of every queue, "agent-logged_out";
-- * login: already ready: "agent-already_logged_in"; else ready in the
--   user's `queues`, "agent-logged_in";
-- * paused: only from ready: "agent-pause", paused for the timeout;
-- * resume: from paused or ready: "agent-resume"; from logged out:
--   "agent-invalid_choice".
-- Logging in and resuming wake the callers waiting in the agent's queues.
-- Exit: "_".
local kazoo = require("kazoo")
local acdc = require("acdc")

local function user_queues(call, agent_id)
	local user = call:doc("users", agent_id) or {}
	local queues = {}
	for _, queue in (type(user.queues) == "table" and user.queues or {}) do
		if kazoo.string(queue) then
			table.insert(queues, queue)
		end
	end
	return queues
end

return {
	description = "Log a call-center agent in or out, pause or resume.",
	schema = {
		type = "object",
		required = { "action" },
		properties = {
			action = { type = "string", enum = { "login", "logout", "paused", "pause", "resume" } },
			timeout = { type = "integer" },
			presence_id = { type = "string" },
			presence_state = {
				type = "string",
				enum = { "early", "confirmed", "terminated", "red_flash", "red_solid", "green" },
			},
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
		local status = acdc.status(call, agent)
		local action = kazoo.string(data.action, "")
		if action == "pause" then
			action = "paused"
		end
		if action == "logout" then
			acdc.save_status(call, agent, { status = "logged_out", queues = {}, idle_since = status.idle_since })
			call:play("agent-logged_out")
		elseif action == "login" and status.status == "ready" then
			call:play("agent-already_logged_in")
		elseif action == "login" then
			local queues = user_queues(call, agent)
			acdc.save_status(call, agent, { status = "ready", queues = queues, idle_since = call:now() })
			call:play("agent-logged_in")
			acdc.wake(call, queues)
		elseif action == "paused" and status.status == "ready" then
			local minutes = tonumber(call.capture_group or "")
			local seconds = minutes and minutes * 60 or kazoo.integer(data.timeout, 600)
			call:play("agent-pause")
			status.status = "paused"
			status.paused_until = call:now() + seconds * 1000
			acdc.save_status(call, agent, status)
		elseif action == "resume" and (status.status == "paused" or status.status == "ready") then
			status.status = "ready"
			status.paused_until = nil
			acdc.save_status(call, agent, status)
			call:play("agent-resume")
			acdc.wake(call, status.queues)
		else
			call:log("info", "acdc_agent: invalid change from " .. status.status .. " to " .. action)
			call:play("agent-invalid_choice")
		end
		return "_"
	end,
}
