-- A MessagePack-RPC backend in Lua: ghostgate run deploy/examples/backend.lua
local ghost = require "ghost"
local calc = {}
function calc.add(a, b) return a + b end
function calc.divide(a, b)
    if b == 0 then error("division by zero") end
    return a / b
end

ghost.serve(calc, arg[1] or "tcp://127.0.0.1:9001")
