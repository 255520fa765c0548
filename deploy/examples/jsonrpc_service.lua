-- A legacy JSON-RPC 2.0 service over HTTP, to put behind the gateway (README "Front a legacy
-- service", docs/legacy.md): a calculator with an admin method nobody outside should call.
--
--   POST /rpc  {"jsonrpc":"2.0","id":1,"method":"add","params":[2,3]}
--         ->   {"jsonrpc":"2.0","id":1,"result":5}
--
-- Methods: add(a, b), divide(a, b) (error -32000 on division by zero), echo(x),
-- reset_everything() (the dangerous one: the gateway's guard keeps it private).
-- Run: luajit deploy/examples/jsonrpc_service.lua [--port 8545]   (Debian: lua-luv, lua-cjson)
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path

local cjson = require "cjson.safe"
local tiny = require "tiny_http"

local calls = 0
local methods = {}

function methods.add(a, b) return a + b end
function methods.echo(x) return x end
function methods.divide(a, b)
    if b == 0 then error({ code = -32000, message = "division by zero" }) end
    return a / b
end
function methods.reset_everything()
    calls = 0
    return "everything reset"
end

local function answer(id, key, value)
    return 200, cjson.encode({ jsonrpc = "2.0", id = id, [key] = value }),
        { ["Content-Type"] = "application/json" }
end

local function handle(req)
    if req.method ~= "POST" or req.path ~= "/rpc" then return 404, "JSON-RPC is at POST /rpc" end
    local msg = cjson.decode(req.body)
    if type(msg) ~= "table" then
        return answer(cjson.null, "error", { code = -32700, message = "Parse error" })
    end
    calls = calls + 1
    local f = methods[msg.method]
    if not f then return answer(msg.id, "error", { code = -32601, message = "Method not found" }) end
    local ok, res = pcall(f, unpack(type(msg.params) == "table" and msg.params or {}))
    if not ok then
        if type(res) ~= "table" then res = { code = -32603, message = tostring(res) } end
        return answer(msg.id, "error", res)
    end
    return answer(msg.id, "result", res)
end

local opts = tiny.args(arg)
if opts.port == 0 and not arg[1] then opts.port = 8545 end
tiny.run(tiny.serve(opts.host, opts.port, handle), "path=/rpc")
