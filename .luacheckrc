-- luacheck configuration (spec/run lints lua/ policies/ spec/ deploy/).
std = "luajit"
max_line_length = 110
codes = true
-- Methods whose signature an interface fixes (policy phases: function _M:access(ctx)) may
-- ignore their implicit self.
self = false

exclude_files = { "build/**" }

files["spec/**/*_spec.lua"] = { std = "+busted" }

-- Lua adapters (docs/legacy.md) run with these globals given by the gateway.
local adapter_globals = { "upstream", "http", "json", "log", "bin", "is_bin", "map", "null", "service" }
files["deploy/examples/*_adapter.lua"] = { read_globals = adapter_globals }
files["spec/07-legacy/adapters/*.lua"] = { read_globals = adapter_globals }
-- Example configs use the policy constructors the config environment gives.
local config_globals = { "guard", "auth", "route", "breaker", "retry", "ratelimit", "fallback", "policy" }
files["deploy/examples/legacy.lua"] = { read_globals = config_globals }
files["deploy/examples/production.lua"] = { read_globals = config_globals }
