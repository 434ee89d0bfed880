-- metaflows/play: play a media (Kazoo's konami_play).
--
-- Data (code defaults): `id` (the media; without it nothing plays), `leg`
-- ("both"; "self" = the leg that pressed, "peer" = the other), `answer`
-- (true: answers the caller's leg first, unless it is bridged).
--
-- Any digit of a leg it plays to stops it. Without a bridge it plays to the
-- caller (and "peer" plays to nobody). Exit: continue to "_".
--
-- Deviation: Kazoo queues the media and runs the child at once; here the
-- child runs once the media has played (its time runs beside the verb the
-- code interrupted: a bridge's talk is not made longer).
local kazoo = require("kazoo")
local metaflows = require("metaflows")

return {
	description = "Play a media to one leg or both.",
	schema = {
		type = "object",
		properties = {
			answer = { type = "boolean", default = true },
			id = { type = "string" },
			leg = { type = "string", enum = { "self", "peer", "both" }, default = "both" },
		},
	},
	handle = function(call, data)
		local media = kazoo.string(data.id)
		if not media then
			call:log("info", "play: no media id")
			return nil
		end
		local leg = metaflows.legs(call, kazoo.string(data.leg, "both"), metaflows.pressed(call, data))
		if not leg then
			call:log("info", "play: no peer to play to")
			return nil
		end
		if kazoo.boolean(data.answer, true) and call:peer() == nil then
			call:answer()
		end
		call:play(media, { leg = leg })
		return nil
	end,
}
