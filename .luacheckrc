-- luacheck configuration (spec/run lints lua/ policies/ spec/ deploy/).
std = "luajit"
max_line_length = 110
codes = true
-- Methods whose signature an interface fixes (policy phases: function _M:access(ctx)) may
-- ignore their implicit self.
self = false

exclude_files = { "build/**" }

files["spec/**/*_spec.lua"] = { std = "+busted" }
