-- ghost.client: ghost.connect(), the connection behind a proxy, and the one function every
-- call goes through (invoke).
--
-- A call writes its request straight into the connection's output buffer (ghost.core packs the
-- arguments; nothing is copied per call) and waits: a worker coroutine yields, other code runs
-- the loop until the answer comes. Output is flushed once per loop turn, so calls made by many
-- tasks before the loop runs again share one write: 1,000 calls in flight are pipelined.
--
-- Connections: ghost.connect() connects (and authenticates, with a token) before it returns.
-- When the connection dies, calls in flight fail at once (connection_lost) and the next call
-- opens a new one (its calls queue while it connects; with a token, ghost.auth(token) is sent
-- first). gw:close() closes it for good.

local core = require "ghost.core"
local sched = require "ghost.sched"
local errors = require "ghost.errors"
local proxy = require "ghost.proxy"
local objects = require "ghost.objects"

local type, error, tostring, pairs, ipairs = type, error, tostring, pairs, ipairs
local format, match = string.format, string.match

local core_connect, core_now = core.connect, core.now
local current, wait = sched.current, sched.wait
local EV_RESPONSE, EV_FAIL, EV_CONNECT = sched.EV_RESPONSE, sched.EV_FAIL, sched.EV_CONNECT
local new_error, from_remote = errors.new, errors.from_remote
local codes = errors.codes
local cur = objects.cur -- the connection a function or ghost.ref value is passed on

local _M = {}

local DEFAULT_TIMEOUT = 30 -- seconds, per call

-- Open a new connection for client (does not wait). Returns conn or nil, err.
local function new_conn(client)
    local conn, _, msg = core_connect(client.addr, nil, 0, client.max_message, client.max_depth,
        client.max_values, client.tls)
    if not conn then return nil, new_error("connection_failed", msg) end
    client.conn = conn
    objects.client_session(conn, client.timeout_ms)
    if client.token then
        conn:request(client.on_auth, client.timeout_ms, "ghost.auth", client.token)
    end
    return conn
end

local function fail(view, e)
    if view.try then return nil, e end
    error(e, 0)
end

-- Call `name` with the arguments ...; the result, or (try style) nil, err.
local function invoke(view, name, ...)
    if type(name) ~= "string" then
        error("ghost: method name must be a string, got " .. type(name), 2)
    end
    local client = view.client
    local conn = client.conn
    if not conn then
        if client.closed then
            return fail(view, new_error("closed", "the connection was closed with close()", name))
        end
        local err
        conn, err = new_conn(client)
        if not conn then
            err.method = name
            return fail(view, err)
        end
    end
    local co, rec = current()
    local w = rec and co or {}
    local tmo = view.timeout_ms
    cur.conn = conn
    local id, kind, msg = conn:request(w, tmo, name, ...)
    cur.conn = nil
    if not id then
        if kind == "closed" and not client.closed then
            -- The connection died since the last call: this call opens a new one.
            client.conn = nil
            local err
            conn, err = new_conn(client)
            if not conn then
                err.method = name
                return fail(view, err)
            end
            cur.conn = conn
            id, kind, msg = conn:request(w, tmo, name, ...)
            cur.conn = nil
        end
        if not id then
            if kind == "encode" then error(name .. ": " .. msg, 2) end
            return fail(view, new_error(kind, msg, name))
        end
    end
    local k, x, y = wait(rec, w, id)
    if k == EV_RESPONSE then
        if x == nil then return y end
        local e = from_remote(x, name)
        if e.code == codes.unauthenticated and client.auth_error then
            e.message = e.message .. " (ghost.auth failed: " .. tostring(client.auth_error.message) .. ")"
        end
        return fail(view, e)
    elseif k == EV_FAIL then
        return fail(view, new_error(x, y, name))
    end
    error(new_error("cancelled", "the task was cancelled while waiting for " .. name, name), 0)
end
_M.invoke = invoke

-- gw.svc.method:promise(...): the call is sent now; a promise of its result is returned.
local function promise(view, name, ...)
    local client = view.client
    local conn = client.conn
    if not conn then
        if client.closed then
            error(new_error("closed", "the connection was closed with close()", name), 2)
        end
        local err
        conn, err = new_conn(client)
        if not conn then
            err.method = name
            error(err, 2)
        end
    end
    return objects.promise(conn, view.timeout_ms, nil, name, ...)
end
proxy.init(invoke, promise)

---------------------------------------------------------------------------------------------
-- The local methods of every proxy (they shadow remote names of the same spelling)

local local_impl = {}

--- gw:call(name, ...): call any method by its full name.
function local_impl.call(view, name, ...)
    return invoke(view, name, ...)
end

--- gw:close(): close the connection; calls in flight fail with `closed`, later calls too.
function local_impl.close(view)
    local client = view.client
    client.closed = true
    local conn = client.conn
    if conn then conn:close("connection closed with close()") end
end

--- gw:ping(): seconds for a round trip to the gateway (ghost.ping).
function local_impl.ping(view)
    local t0 = core_now()
    local r, err = invoke(view, "ghost.ping")
    if r == nil and err then return nil, err end
    return core_now() - t0
end

--- gw:is_connected(): whether the connection is open right now.
function local_impl.is_connected(view)
    local conn = view.client.conn
    return conn ~= nil and conn:state() == "open"
end

local function derive(view, opts)
    local o = { try = view.try, timeout_ms = view.timeout_ms }
    if opts ~= nil then
        if type(opts) ~= "table" then error("options table expected, got " .. type(opts), 3) end
        if opts.try ~= nil then o.try = opts.try end
        if opts.timeout ~= nil then
            if type(opts.timeout) ~= "number" or opts.timeout <= 0 then
                error("timeout must be a positive number of seconds", 3)
            end
            o.timeout_ms = opts.timeout * 1000
        end
    end
    return proxy.new_view(view.client, o, view.local_impl).root
end

--- gw:try(): the same connection, calls return nil, err instead of raising.
function local_impl.try(view, opts)
    if opts == nil then
        local t = view.try_root
        if not t then
            t = derive(view, { try = true })
            view.try_root = t
        end
        return t
    end
    local o = { try = true }
    for k, v in pairs(opts) do o[k] = v end
    return derive(view, o)
end

--- gw:with{timeout = s, try = bool}: the same connection with other call options.
function local_impl.with(view, opts)
    return derive(view, opts)
end

_M.local_names = { "call", "close", "ping", "is_connected", "try", "with" }

---------------------------------------------------------------------------------------------
-- ghost.connect

local function check_opt(opts, k, typ)
    local v = opts[k]
    if v ~= nil and type(v) ~= typ then
        error(format("ghost.connect: option %s must be a %s, got %s", k, typ, type(v)), 3)
    end
    if typ == "number" and v ~= nil and v <= 0 then
        error(format("ghost.connect: option %s must be positive", k), 3)
    end
    return v
end

local known = { token = true, timeout = true, connect_timeout = true, try = true,
    max_message = true, max_depth = true, max_values = true,
    ca = true, cert = true, key = true, server_name = true, tls12 = true }

-- tls://host:port: the server's certificate is checked against ca (default: the system's CAs)
-- and the host as written (or server_name); cert and key: a client certificate (mTLS).
local function tls_options(addr, opts)
    local host = match(addr, "^tls://%[([^%]]+)%]:%d+$") or match(addr, "^tls://([^/]+):%d+$")
    if not host then
        for _, k in ipairs({ "ca", "cert", "key", "server_name" }) do
            if opts[k] ~= nil then
                error(format("ghost.connect: option %s is for tls:// addresses", k), 3)
            end
        end
        return nil
    end
    local t = { server_name = opts.server_name or host, tls12 = opts.tls12 }
    for _, k in ipairs({ "ca", "cert", "key", "server_name" }) do
        if opts[k] ~= nil and type(opts[k]) ~= "string" then
            error(format("ghost.connect: option %s must be a string, got %s", k, type(opts[k])), 3)
        end
        t[k] = opts[k] or t[k]
    end
    if (t.cert == nil) ~= (t.key == nil) then
        error("ghost.connect: options cert and key go together", 3)
    end
    return t
end

--- Connect to a gateway (or any MessagePack-RPC server). Returns the root proxy, or nil, err
-- (an error object: connection_failed, or the ghost.auth error with a token).
function _M.connect(addr, opts)
    if type(addr) ~= "string" then
        error("ghost.connect: address string expected, got " .. type(addr), 2)
    end
    if opts == nil then opts = {} end
    if type(opts) ~= "table" then
        error("ghost.connect: options table expected, got " .. type(opts), 2)
    end
    for k in pairs(opts) do
        if not known[k] then error(format("ghost.connect: unknown option '%s'", tostring(k)), 2) end
    end
    local timeout = check_opt(opts, "timeout", "number") or DEFAULT_TIMEOUT
    local client = {
        addr = addr,
        token = check_opt(opts, "token", "string"),
        timeout_ms = timeout * 1000,
        max_message = check_opt(opts, "max_message", "number"),
        max_depth = check_opt(opts, "max_depth", "number"),
        max_values = check_opt(opts, "max_values", "number"),
        tls = tls_options(addr, opts),
    }
    local connect_ms = (check_opt(opts, "connect_timeout", "number") or timeout) * 1000
    client.on_auth = function(kind, _, x, y)
        if kind == EV_RESPONSE then
            client.auth_error = x ~= nil and from_remote(x, "ghost.auth") or nil
        else
            client.auth_error = new_error(x or "cancelled", y or "", "ghost.auth")
        end
    end

    local co, rec = current()
    local w = rec and co or {}
    local conn, id, msg = core_connect(addr, w, connect_ms, client.max_message, client.max_depth,
        client.max_values, client.tls)
    if not conn then return nil, new_error("connection_failed", msg) end
    local k, x, y = wait(rec, w, id)
    if k ~= EV_CONNECT then
        conn:close()
        if k == EV_FAIL then return nil, new_error(x, y) end
        error(new_error("cancelled", "the task was cancelled while connecting"), 0)
    end
    client.conn = conn
    objects.client_session(conn, client.timeout_ms)
    if client.token then
        w = rec and co or {}
        id = conn:request(w, client.timeout_ms, "ghost.auth", client.token)
        k, x, y = wait(rec, w, id)
        if k ~= EV_RESPONSE or x ~= nil then
            conn:close()
            client.conn = nil
            if k == EV_RESPONSE then return nil, from_remote(x, "ghost.auth") end
            if k == EV_FAIL then return nil, new_error(x, y, "ghost.auth") end
            error(new_error("cancelled", "the task was cancelled while connecting"), 0)
        end
    end
    local view = proxy.new_view(client, { try = opts.try, timeout_ms = client.timeout_ms }, local_impl)
    return view.root
end

return _M
