-- luacheck configuration: no globals anywhere.
std = "max"
max_line_length = 120
files["spec"] = { std = "+busted" }
files["examples/love"] = { globals = { "love" } }
exclude_files = { "build/**" }
