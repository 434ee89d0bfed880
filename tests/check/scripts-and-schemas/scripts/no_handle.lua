return {
	description = "Forgot its handle function.",
}
