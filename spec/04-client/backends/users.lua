-- A ghost.serve backend for the client specs: `ghostgate run users.lua [LISTEN [GATEWAY]]`.
-- It reports what it received, sleeps, fails on demand, counts every request (stats), has
-- methods named like the proxy's local methods, and calls other services through GATEWAY.
local ghost = require "ghost"

local listen, gateway = arg[1] or "tcp://127.0.0.1:0", arg[2]
local select, type, tostring, getmetatable = select, type, tostring, getmetatable

local api = { invoices = {} }
local srv, gw

-- What arrived: the number of params and their values.
function api.params(...)
    return { n = select("#", ...), args = { ... } }
end

function api.get_profile(id)
    return { id = id, name = "user" .. tostring(id) }
end

function api.echo(v)
    return v
end

-- How a value arrived: Lua type, MessagePack bin or str, array or map.
local map_mt = getmetatable(ghost.map({}))
function api.kind(v)
    if ghost.is_bin(v) then return "bin" end
    if type(v) == "table" then return getmetatable(v) == map_mt and "map" or "table" end
    return type(v)
end

function api.sleep(seconds, v)
    ghost.sleep(seconds)
    return v
end

function api.fail(msg)
    error(msg)
end

function api.fail_typed(code, typ, msg)
    error(ghost.error(typ, msg, code))
end

function api.stats()
    return { requests = srv.requests }
end

function api.invoices.list(page)
    return { page = page or 1, items = { "a", "b" } }
end

-- Hold every call until n calls are waiting at once (proves they were all in flight).
local arrived, all_here = 0, ghost.event()
function api.barrier(n, i)
    arrived = arrived + 1
    if arrived >= n then all_here:set() end
    all_here:wait()
    return i
end

-- Remote methods spelled like the proxy's local ones.
function api.close() return "remote close" end
function api.ping() return "remote ping" end
function api.call(x) return "remote call " .. tostring(x) end
function api.is_connected() return "remote is_connected" end

-- Call another service through the gateway (this handler waits; the backend goes on).
function api.relay(method, ...)
    gw = gw or assert(ghost.connect(gateway, { timeout = 10 }))
    return gw:call(method, ...)
end

srv = assert(ghost.listen(api, listen, { drain_timeout = 1 }))
srv:serve()
