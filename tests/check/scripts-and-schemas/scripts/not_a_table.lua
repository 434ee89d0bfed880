return "handle"
