-- function: run a stored function that returns a flow, and branch to it
-- (Kazoo's cf_function, with Luau instead of JavaScript).
--
-- Data: `id` (required), a `functions` document of the account:
-- `{"name": ..., "language": "luau", "source": "<Luau chunk>"}`. The chunk
-- returns a `function(call, data)`; it runs in the modules' sandbox, within
-- this module's budgets, with this call and this node's `data`
-- (read-only), and returns a flow `{module, data, children}` or nil.
--
-- Exits:
-- * a valid flow -> the call branches to it (call:branch: this node's "_"
--   is where it returns when that flow stops; a branch is counted);
-- * nil -> "_";
-- * no `id`, no such document, another language, or a value that is not a
--   valid flow -> logged (warning), "_" (Kazoo: an error, logged,
--   continue);
-- * the source does not compile, or the function raises (or runs past a
--   budget) -> an error event naming the document and line, then "_", as
--   for a module that fails.
--
-- Deviations: Kazoo's functions get the call's request parameters (Call-ID,
-- Caller-ID, ...) and user variables in a query string; ours get the call
-- object (its fields, call:get, call:doc, ...) and the node's data.
local kazoo = require("kazoo")

-- Why `flow` is not a flow table (nil when it is one).
local function not_a_flow(flow: any): string?
	if type(flow) ~= "table" then
		return "returned a " .. type(flow) .. ", not a flow"
	end
	if type(flow.module) ~= "string" or flow.module == "" then
		return "returned a table without a `module` name"
	end
	if flow.data ~= nil and type(flow.data) ~= "table" then
		return "returned a flow whose `data` is a " .. type(flow.data) .. ", not a table"
	end
	if flow.children ~= nil and type(flow.children) ~= "table" then
		return "returned a flow whose `children` is a " .. type(flow.children) .. ", not a table"
	end
	if flow.callflow_id ~= nil then
		return "returned a route (`callflow_id`), not a flow"
	end
	return nil
end

return {
	description = "Run a stored Luau function that returns a flow, and branch to it.",
	schema = {
		type = "object",
		required = { "id" },
		properties = {
			id = { type = "string", minLength = 1, description = "A functions document of the account" },
		},
	},
	handle = function(call, data)
		local id = kazoo.string(data.id)
		if not id then
			call:log("warning", "function: no id; continuing")
			return nil
		end
		local flow, err = call:run_function(id, data)
		if err then
			call:log("warning", "function: " .. err .. "; continuing")
			return nil
		end
		if flow == nil then
			call:log("info", "function " .. id .. " returned nil; continuing")
			return nil
		end
		local why = not_a_flow(flow)
		if why then
			call:log("warning", "function " .. id .. " " .. why .. "; continuing")
			return nil
		end
		local directive, invalid = call:branch(flow)
		if not directive then
			call:log("warning", "function " .. id .. ": " .. (invalid or "cannot branch") .. "; continuing")
			return nil
		end
		return directive
	end,
}
