-- spec/support/legacy.lua -- additions to the test kit for spec/07-legacy: the HTTP upstreams
-- (spec/support/jsonrpc_server.lua, deploy/examples/users_service.lua and jsonrpc_service.lua)
-- run as processes, and direct JSON-RPC calls to them with curl (their counters).
--
--   jsonrpc(opts)              start the JSON-RPC test upstream: {url, base, port, proc}
--                              (opts.idle_timeout: seconds it keeps an idle connection)
--   users()                    start the example REST service: {base, port, proc}
--   script(path, args, name)   start any of them: waits for "ready http://HOST:PORT"
--   rpc(url, method, params)   one JSON-RPC call with curl: the decoded response object
--   count(up, method)          requests the JSON-RPC upstream saw (for method, or all)
--   gateway(services, top, opts)  start_gateway with these services (raises on failure)
--   adapter(source)            write an adapter file, return its path
local h = require "spec.support.helpers"
local cjson = require "cjson.safe"

local assert, error, tonumber, unpack, pairs = assert, error, tonumber, unpack, pairs

local _M = {}

function _M.script(path, args, name)
    local argv = { path }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local proc = assert(h.spawn("luajit", argv, { name = name or path }))
    local line, err = proc:wait_line("^ready http://", h.timeout(10))
    if not line then
        proc:stop(1)
        error(err, 2)
    end
    local host, port = line:match("^ready http://([^:]+):(%d+)")
    local base = "http://" .. host .. ":" .. port
    return { proc = proc, host = host, port = tonumber(port), base = base }
end

function _M.jsonrpc(opts)
    opts = opts or {}
    local args = { "--port", "0" }
    if opts.idle_timeout then
        args[#args + 1] = "--idle-timeout"
        args[#args + 1] = tostring(opts.idle_timeout)
    end
    local s = _M.script("spec/support/jsonrpc_server.lua", args, "jsonrpc")
    s.url = s.base .. "/rpc"
    return s
end

function _M.users()
    return _M.script("deploy/examples/users_service.lua", { "--port", "0" }, "users")
end

function _M.rpc(url, method, params)
    local body = cjson.encode({ jsonrpc = "2.0", id = 1, method = method, params = params or {} })
    local r = assert(h.run("curl", { "-s", "-m", "5", "-H", "Content-Type: application/json",
        "-d", body, url }))
    local v = cjson.decode(r.stdout)
    if type(v) ~= "table" then error("not JSON from " .. url .. ": " .. r.output, 2) end
    return v
end

function _M.count(up, method)
    local v = _M.rpc(up.url, "count", method and { method } or {})
    return v.result
end

function _M.gateway(services, top, opts)
    local cfg = { services = services }
    for k, v in pairs(top or {}) do cfg[k] = v end
    return assert(h.start_gateway(cfg, opts))
end

function _M.adapter(source, name)
    return assert(h.write_file(h.tmpdir() .. "/" .. (name or "adapter.lua"), source))
end

_M.unpack = unpack
return _M
