-- Call it through the gateway: ghostgate run deploy/examples/client.lua
local ghost = require "ghost"
local gw = assert(ghost.connect(arg[1] or "tcp://127.0.0.1:7420", { timeout = 5 }))

print(gw.calc.add(2, 40))                              --> 42
local ok, err = pcall(gw.calc.divide, 1, 0)
print(ok, err.type, err.message)                       --> false  runtime_error  ...: division by zero
local sums = ghost.all({ function() return gw.calc.add(1, 2) end, function() return gw.calc:add(3, 4) end })
print(sums[1], sums[2])                                --> 3  7
gw:close()
