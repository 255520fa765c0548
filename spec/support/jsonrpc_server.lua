-- spec/support/jsonrpc_server.lua -- a JSON-RPC 2.0 over HTTP upstream for the specs (luv +
-- lua-cjson, on deploy/examples/tiny_http.lua). Run as a process:
--
--   luajit spec/support/jsonrpc_server.lua [--port N] [--path /rpc] [--idle-timeout S]
--
-- prints "ready http://127.0.0.1:PORT/rpc" and serves POST PATH until SIGTERM. Methods:
--   echo(x) -> x                      add(a, b) -> a + b
--   fail(msg) -> JSON-RPC error {code = -32000, message = msg, data = {detail = "from fail"}}
--   error500(msg) -> the same error, with HTTP status 500 (as some servers send errors)
--   http500() -> HTTP 500 with a text body      garbage() -> HTTP 200, a body that is not JSON
--   hang() -> never answers                     die() -> half a response, then the socket closes
--   wrong_id() -> a response whose id is not the request's
--   slow(seconds, x) -> x after that long       literal(json_text) -> that JSON as the result
--   request() -> { body = the raw request body, headers = the request's headers }
--   count(method) -> requests seen for that method (all methods but count when nil)
--   connections() -> TCP connections accepted so far
--   anything else -> JSON-RPC error -32601 "Method not found"
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/../../deploy/examples/?.lua;" .. package.path

local uv = require "luv"
local cjson = require "cjson.safe"
local tiny = require "tiny_http"

local opts = tiny.args(arg)
local path = "/rpc"
for i = 1, #arg do
    if arg[i] == "--path" then path = arg[i + 1] end
end

local counts, total = {}, 0
local server

local function reply(id, result)
    if result == nil then result = cjson.null end
    return 200, cjson.encode({ jsonrpc = "2.0", id = id, result = result }),
        { ["Content-Type"] = "application/json" }
end

local function reply_error(id, code, message, data, status)
    local e = { code = code, message = message, data = data }
    return status or 200, cjson.encode({ jsonrpc = "2.0", id = id, error = e }),
        { ["Content-Type"] = "application/json" }
end

local methods = {}

function methods.echo(_, p) return p[1] end
function methods.add(_, p) return p[1] + p[2] end

function methods.fail(id, p)
    return false, reply_error(id, -32000, p[1] or "failed", { detail = "from fail" })
end

function methods.error500(id, p)
    return false, reply_error(id, -32001, p[1] or "failed", nil, 500)
end

function methods.http500()
    return false, 500, "internal error: the legacy service fell over"
end

function methods.garbage()
    return false, 200, "<html>this is not JSON</html>", { ["Content-Type"] = "text/html" }
end

function methods.hang()
    return false, { hang = true }
end

function methods.die()
    return false, { raw = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        .. '{"jsonrpc":"2.0","res', close = true }
end

function methods.wrong_id(id)
    return false, reply(id + 1000, "not yours")
end

function methods.literal(id, p)
    return false, 200, '{"jsonrpc":"2.0","id":' .. tostring(id) .. ',"result":' .. p[1] .. '}',
        { ["Content-Type"] = "application/json" }
end

function methods.slow(id, p, req)
    local t = uv.new_timer()
    t:start(math.floor(p[1] * 1000), 0, function()
        t:close()
        req.peer.respond(reply(id, p[2]))
    end)
    return false, { hang = true }
end

function methods.request(_, _, req)
    return { body = req.body, headers = req.headers }
end

function methods.connections() return server.accepted end

function methods.count(_, p)
    if p[1] then return counts[p[1]] or 0 end
    return total
end

local function handle(req)
    if req.method ~= "POST" then return 405, "POST only" end
    if req.path ~= path then return 404, "no such path: " .. req.path end
    local msg = cjson.decode(req.body)
    if type(msg) ~= "table" then return reply_error(cjson.null, -32700, "Parse error") end
    local id, method, params = msg.id, msg.method, msg.params
    if params == nil or params == cjson.null then params = {} end
    if method ~= "count" and method ~= "connections" then
        counts[method] = (counts[method] or 0) + 1
        total = total + 1
    end
    local m = methods[method]
    if not m then return reply_error(id, -32601, "Method not found") end
    local r = { pcall(m, id, params, req) }
    if not r[1] then return reply_error(id, -32603, "Internal error: " .. tostring(r[2])) end
    if r[2] == false then return unpack(r, 3) end
    return reply(id, r[2])
end

server = tiny.serve(opts.host, opts.port, handle, { idle_timeout = opts.idle_timeout })
tiny.run(server, "path=" .. path)
