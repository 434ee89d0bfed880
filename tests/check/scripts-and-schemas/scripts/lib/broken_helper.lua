local function f(
return f
