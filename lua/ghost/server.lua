-- ghost.server: ghost.serve(obj, addr) exports a Lua table as a MessagePack-RPC backend.
--
-- Exported: the table's own functions whose names do not begin with "_", and the functions of
-- its own plain (metatable-less) subtables as dotted names (obj.invoices.list is
-- "invoices.list"). Nothing reached through a metatable is exported unless opts.expose lists
-- it. Each request runs in a worker coroutine: a handler may call other services through
-- ghost.connect (it yields while it waits; other requests go on). A handler's Lua error
-- becomes an error response {code, type, message, traceback}; the server keeps serving.
-- A handler's first return value is the result.

local core = require "ghost.core"
local sched = require "ghost.sched"
local errors = require "ghost.errors"
local export = require "ghost.export"
local objects = require "ghost.objects"

local type, pairs, ipairs, next, error, tostring, setmetatable, xpcall, unpack =
    type, pairs, ipairs, next, error, tostring, setmetatable, xpcall, unpack
local format = string.format
local concat, sort = table.concat, table.sort
local io_stderr = io.stderr

local go, on_error, last_traceback = sched.go, sched.on_error, sched.last_traceback
local codes = errors.codes
local byte = string.byte
local cur = objects.cur -- the connection a returned function or ghost.ref value goes to

local _M = {}

local Server = {}
Server.__index = Server

local MAX_ARGS = 7000      -- unpack() limit with margin
local MAX_NESTING = 4      -- levels of dotted names
local DEFAULT_DRAIN = 10   -- seconds serve() waits for handlers after close()

-- The handlers of obj: name -> function.
local function collect(obj, opts, level)
    local handlers = export.public_functions(obj, MAX_NESTING)
    if opts.expose ~= nil then
        if type(opts.expose) ~= "table" then error("ghost.serve: expose must be a list of names", level) end
        for _, name in ipairs(opts.expose) do
            local f = obj[name]
            if type(f) ~= "function" then
                error(format("ghost.serve: expose: '%s' is not a function of the object",
                    tostring(name)), level)
            end
            handlers[name] = f
        end
    end
    if next(handlers) == nil then error("ghost.serve: the object has no public function", level) end
    return handlers
end

local PEERS_GRACE = 2000 -- ms the connections get to take their last answers after a stop
local DEFAULT_TTL = 10    -- seconds a registered endpoint outlives its last heartbeat
local REGISTER_POLL = 0.01 -- s between looks at a deregistration (it takes one round trip)

local register_known = { redis = true, service = true, ttl = true, addr = true }

-- opts.register checked, with the address to register: the bound one unless addr is given
-- (required when listening on every interface, which no gateway can dial). Returns addr, ttl
-- or nil, what is wrong (the caller raises it once its listener is closed).
local function register_opts(r, bound)
    if type(r) ~= "table" then return nil, "register must be a table" end
    for k in pairs(r) do
        if not register_known[k] then return nil, format("register: unknown option '%s'", tostring(k)) end
    end
    if type(r.redis) ~= "string" then return nil, "register.redis must be a URL string" end
    if type(r.service) ~= "string" then return nil, "register.service must be a string" end
    if r.ttl ~= nil and type(r.ttl) ~= "number" then
        return nil, "register.ttl must be a number of seconds"
    end
    if r.addr ~= nil and type(r.addr) ~= "string" then
        return nil, "register.addr must be an address string"
    end
    if not r.addr and (bound:find("^tcp://0%.0%.0%.0:") or bound:find("^tcp://%[::%]:")) then
        return nil, "register.addr is required when listening on every interface (" .. bound .. ")"
    end
    return r.addr or bound, r.ttl or DEFAULT_TTL
end

local function stopped(srv)
    if srv.stopped:is_set() then return end
    if srv.drain_id then
        core.cancel(srv.drain_id)
        srv.drain_id = nil
    end
    srv.stopped:set()
    sched.release()
end

-- Nothing is in flight (or the drain timed out): close the connections once their last
-- answers are written; serve() returns when they are closed.
local function finish(srv)
    if srv.finishing then return end
    srv.finishing = true
    if srv.drain_id then core.cancel(srv.drain_id) end
    if core.close_peers(srv) == 0 then return stopped(srv) end
    srv.drain_id = core.sleep(PEERS_GRACE, function()
        srv.drain_id = nil
        if core.close_peers(srv, true) == 0 then stopped(srv) end
    end)
end

-- A $call or $get on an object ended (ghost.objects): it counted as in flight for the drain.
local function object_done(srv)
    srv.inflight = srv.inflight - 1
    if srv.closing and srv.inflight == 0 then finish(srv) end
end

local function reply_error(peer, msgid, code, typ, message)
    if msgid ~= nil then peer:reply(msgid, { code = code, type = typ, message = message }, nil) end
end

local function run_request(srv, h, peer, msgid, method, params, n)
    local ok, res
    local self_arg = srv.self_arg
    if self_arg ~= nil then
        ok, res = xpcall(h, on_error, self_arg, unpack(params, 1, n))
    else
        ok, res = xpcall(h, on_error, unpack(params, 1, n))
    end
    if msgid ~= nil then
        if ok then
            cur.conn = peer
            local sent, kind, msg = peer:reply(msgid, nil, res)
            cur.conn = nil
            if not sent and kind ~= "closed" then
                local too = kind == "too_large"
                local typ = too and "too_large" or "bad_result"
                reply_error(peer, msgid, codes[typ], typ,
                    format("cannot send the result of %s: %s", method, msg))
            end
        else
            local sent, kind = peer:reply(msgid, errors.to_wire(res, last_traceback()), nil)
            if not sent and kind ~= "closed" then
                reply_error(peer, msgid, codes.runtime_error, "runtime_error", tostring(res))
            end
        end
    elseif not ok and not srv.quiet then
        io_stderr:write(format("ghost.serve: notification %s failed: %s\n", method, tostring(res)))
    end
    srv.inflight = srv.inflight - 1
    if srv.closing and srv.inflight == 0 then finish(srv) end
end

-- Called by the scheduler for each request (msgid nil: a notification).
local function on_request(srv, peer, msgid, method, params, n)
    srv.requests = srv.requests + 1
    if not srv.peers[peer] then
        srv.peers[peer] = true
        objects.bind(peer) -- functions and objects in its params call back on it
    end
    if byte(method, 1) == 36 then -- "$call", "$get", "$release", "$finish"
        if srv.closing and msgid ~= nil then
            return reply_error(peer, msgid, codes.shutting_down, "shutting_down",
                "the backend is shutting down")
        end
        return objects.on_request(peer, msgid, method, params, n, srv)
    end
    if n < 0 then
        return reply_error(peer, msgid, codes.bad_request, "bad_request",
            "undecodable params: " .. tostring(params))
    end
    if srv.closing then
        return reply_error(peer, msgid, codes.shutting_down, "shutting_down", "the backend is shutting down")
    end
    local h = srv.handlers[method]
    if not h then
        return reply_error(peer, msgid, codes.no_such_method, "no_such_method",
            format("no such method '%s'", method))
    end
    if n > MAX_ARGS then
        return reply_error(peer, msgid, codes.bad_request, "bad_request", format("too many params (%d)", n))
    end
    srv.inflight = srv.inflight + 1
    go(run_request, srv, h, peer, msgid, method, params, n)
end

local function on_closed(srv, peer)
    srv.peers[peer] = nil
    objects.closed(peer)
    if srv.finishing and core.peers(srv) == 0 then stopped(srv) end
end

local known = { self = true, expose = true, quiet = true, max_message = true, drain_timeout = true,
    signals = true, max_values = true, register = true, tls = true }

-- level: of the user's call, as seen from here.
local function new_server(obj, addr, opts, level)
    if type(obj) ~= "table" then error("ghost.serve: table expected, got " .. type(obj), level) end
    if type(addr) ~= "string" then
        error("ghost.serve: address string expected, got " .. type(addr), level)
    end
    opts = opts or {}
    if type(opts) ~= "table" then error("ghost.serve: options table expected", level) end
    if opts.tls ~= nil and type(opts.tls) ~= "table" then
        error("ghost.serve: option tls must be a table { cert = ..., key = ... }", level)
    end
    for k in pairs(opts) do
        if not known[k] then error(format("ghost.serve: unknown option '%s'", tostring(k)), level) end
    end
    local srv = setmetatable({
        handlers = collect(obj, opts, level + 1), self_arg = opts.self and obj or nil, inflight = 0,
        requests = 0,
        peers = setmetatable({}, { __mode = "k" }), closing = false, quiet = opts.quiet,
        drain = opts.drain_timeout or DEFAULT_DRAIN, signals = opts.signals ~= false,
        stopped = sched.event(), on_request = on_request, on_closed = on_closed,
        object_done = object_done,
    }, Server)
    local l, bound, msg = core.listen(addr, srv, opts.max_message, opts.max_values, opts.tls)
    if not l then return nil, msg end
    srv.listener, srv.address = l, bound
    if opts.register ~= nil then
        local raddr, ttl = register_opts(opts.register, bound)
        local reg, rerr = nil, ttl
        if raddr then
            reg, rerr = core.register(opts.register.redis, opts.register.service, raddr, ttl)
            rerr = rerr and "register: " .. rerr
        end
        if not reg then
            l:close()
            error("ghost.serve: " .. rerr, level)
        end
        srv.registration = reg
    end
    sched.hold()
    if not srv.quiet then
        io_stderr:write(format("ghost.serve: ready listen=%s methods=%s pid=%d\n", bound,
            concat(srv:methods(), ","), core.pid()))
    end
    return srv
end

--- Listen on addr and serve obj without blocking. Returns the server or nil, err.
-- opts: self (call handlers as obj:method(...)), expose (list of inherited method names),
-- quiet (no ready line on stderr), max_message (largest reply, bytes), max_values (largest
-- params decoded, in values), drain_timeout (seconds serve() waits for handlers after
-- close()), signals (false: SIGINT/SIGTERM are not handled by serve()), register ({redis =
-- URL, service = NAME, ttl = 10, addr = the bound address}: an endpoint in the Redis registry,
-- heartbeat every ttl/3, deregistered by close(); docs/scale-out.md).
function _M.listen(obj, addr, opts)
    local srv, err = new_server(obj, addr, opts, 3) -- not a tail call: level 3 is our caller
    return srv, err
end

--- The exported method names, sorted.
function Server:methods()
    local out = {}
    for k in pairs(self.handlers) do out[#out + 1] = k end
    sort(out)
    return out
end

--- Stop accepting connections; requests in flight finish (up to drain_timeout), new ones get
-- 531 shutting_down, then the connections are closed and serve() returns.
function Server:close()
    if self.closing then return end
    self.closing = true
    self.listener:close()
    -- Deregister first: gateways stop sending new calls while the ones in flight drain.
    if self.registration then self.registration:stop() end
    if self.inflight == 0 then
        finish(self)
    else
        local srv = self
        self.drain_id = core.sleep(self.drain * 1000, function()
            srv.drain_id = nil
            finish(srv)
        end)
    end
end

--- Serve until close() (or SIGINT/SIGTERM). Returns true.
function Server:serve()
    local srv = self
    local function on_signal()
        srv:close()
    end
    if self.signals then sched.on_signal(on_signal) end
    self.stopped:wait()
    if self.signals then sched.off_signal(on_signal) end
    -- The deregistration started at close() takes one Redis round trip (at most its 1 s
    -- timeout): wait for it, so that a script that returns has left the registry.
    local reg = self.registration
    while reg and not reg:done() do sched.sleep(REGISTER_POLL) end
    return true
end

--- ghost.serve(obj, addr, opts): listen, then serve until stopped. Returns true, or nil, err
-- when it cannot listen.
function _M.serve(obj, addr, opts)
    local srv, err = new_server(obj, addr, opts, 3)
    if not srv then return nil, err end
    return srv:serve()
end

return _M
