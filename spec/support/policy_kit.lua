-- spec/support/policy_kit.lua -- unit-test kit for policies: plain LuaJIT, no gateway, no sockets.
--
-- It runs the real runtime (lua/ghost/policy.lua: build, request, response) and the real config
-- validation (lua/ghost/config.lua) with a fake core whose clocks the spec moves by hand, so a
-- breaker's cooldown or a bucket's refill takes no wall-clock time.
--
-- API:
--   core(opts)              fake core: now() (monotonic, starts at 1000), time() (wall clock,
--                           starts at 1.7e9), args(), args_raw(), sha256_hex, hmac_sha256_hex,
--                           consttime_eq, log(); core:advance(seconds) moves both clocks;
--                           core.logged lists log calls.
--   service(svc, opts)      a harness for one service `demo` built like the gateway does:
--                           svc is the service's config ({ policies = {...}, upstreams = ...;
--                           upstreams default to three addresses}); opts.core, opts.top (top-level
--                           config fields), opts.old (a harness to reload from),
--                           opts.connected = false (endpoints start with no live connection).
--                           Raises with the config error when the config is invalid.
--   h:request(method, args, client) -> r: { verdict = "continue" | "reject" | "respond" |
--                           "respond_raw", endpoint, deadline, code, message, retry_after, value,
--                           decoded (respond_raw: the value), slot }
--   h:response(r, kind, o)  the response phase of call r: kind "ok" | "upstream_error" |
--                           "gateway_error"; o: { code, endpoint (default r.endpoint), result
--                           (a Lua value, encoded), attempt (1), sent (true), latency (0.001) }.
--                           Returns { verdict = nil | "respond" | "respond_raw" | "retry", value,
--                           decoded }.
--   h:call(method, args, kind, o, client) -> r, response (response only when r continued)
--   h:reload(svc, opts)     a new harness on the same core, built from this one (state kept)
--   h:instance(name)        the first instance of a policy in the pipeline
--   h:set_connected(i, n)   the core reports n live connections on endpoint i
--   client(fields)          a connection table as the core makes it (address, host, meta)
--   ctx(fields)             a fake ctx for calling a module's phases directly: records what the
--                           phase decided in .verdict, .code, .message, .retry_after, .value,
--                           .endpoint, .deadline; args() returns fields.args
--   validate(spec, path)    ghost.policy.validate of one policy spec: spec or nil, err
--   mp                      spec/support/mp.lua

if not package.path:find("./lua/?.lua", 1, true) then
    package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
end
-- ghost.policy takes its constants from C: ghost.consts, in $GG_BUILD/lua/ghost/core.so.
local so_path = (os.getenv("GG_BUILD") or "build") .. "/lua/?.so;"
if not package.cpath:find(so_path, 1, true) then package.cpath = so_path .. package.cpath end

local policy = require "ghost.policy"
local config = require "ghost.config"
local crypto = require "spec.support.crypto"
local mp = require "spec.support.mp"

local error, ipairs, pairs, setmetatable, type = error, ipairs, pairs, setmetatable, type

local _M = { policy = policy, config = config, mp = mp, crypto = crypto }

local names = { [policy.CONTINUE] = "continue", [policy.REJECT] = "reject",
                [policy.RESPOND] = "respond", [policy.RESPOND_RAW] = "respond_raw",
                [policy.RETRY] = "retry" }
_M.verdicts = names

local kinds = { ok = 0, upstream_error = 1, gateway_error = 2 }

---------------------------------------------------------------------------------------------
-- The fake core

local Core = {}
Core.__index = Core

function Core:advance(seconds)
    self.clock = self.clock + seconds
    self.wall = self.wall + seconds
end

function _M.core(opts)
    opts = opts or {}
    local self = setmetatable({ clock = opts.clock or 1000, wall = opts.wall or 1.7e9, logged = {},
                                call_args = nil }, Core)
    self.now = function() return self.clock end
    self.time = function() return self.wall end
    -- like the gateway: the params are only there during a request phase
    self.args = function()
        if self.call_args == nil then error("ctx:args() is only available in the request phase", 2) end
        return self.call_args
    end
    self.args_raw = function()
        if self.call_args == nil then error("ctx:args_raw() is only available in the request phase", 2) end
        return mp.encode(self.call_args)
    end
    self.sha256_hex = crypto.sha256_hex
    self.hmac_sha256_hex = crypto.hmac_sha256_hex
    self.consttime_eq = crypto.consttime_eq
    self.log = function(level, event, msg)
        self.logged[#self.logged + 1] = { level = level, event = event, message = msg }
    end
    return self
end

---------------------------------------------------------------------------------------------
-- Connections and a fake ctx

function _M.client(fields)
    local c = { address = "127.0.0.1:40000", host = "127.0.0.1", meta = {} }
    for k, v in pairs(fields or {}) do c[k] = v end
    return c
end

local Ctx = {}
Ctx.__index = Ctx

function Ctx:reject(code, message, retry_after)
    local c = code
    if type(c) == "string" then c = policy.codes[c] end
    if not require("ghost.consts").error_types[c] then
        error(string.format("ctx:reject: unknown error code %s", tostring(code)), 2)
    end
    self.verdict, self.code, self.message, self.retry_after = "reject", c, message, retry_after
end

function Ctx:respond(value)
    self.verdict, self.value = "respond", value
end

function Ctx:respond_raw(bytes)
    self.verdict, self.value = "respond_raw", bytes
end

function Ctx:retry(delay)
    self.verdict, self.value = "retry", delay or 0
end

function Ctx:set_endpoint(i)
    self.endpoint = i
end

function Ctx:set_deadline(seconds)
    self.deadline = seconds
end

function Ctx:args()
    return self._args
end

function Ctx:args_raw()
    return mp.encode(self._args or {})
end

function _M.ctx(fields)
    fields = fields or {}
    local client = fields.client or _M.client()
    local self = setmetatable({ service = "demo", method = "echo", endpoint = 0, deadline = 30, slot = 1,
                                client = client, address = client.address, identity = client.identity,
                                meta = client.meta }, Ctx)
    for k, v in pairs(fields) do
        if k == "args" then self._args = v else self[k] = v end
    end
    return self
end

---------------------------------------------------------------------------------------------
-- Pipelines

function _M.validate(spec, path)
    return policy.validate(spec, "spec", path)
end

local Harness = {}
Harness.__index = Harness

local DEFAULT_UPSTREAMS = { "tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002", "tcp://127.0.0.1:7003" }

function _M.service(svc, opts)
    opts = opts or {}
    local s = {}
    for k, v in pairs(svc or {}) do s[k] = v end
    if s.upstream == nil and s.upstreams == nil then s.upstreams = DEFAULT_UPSTREAMS end
    local top = { services = { demo = s } }
    for k, v in pairs(opts.top or {}) do top[k] = v end
    local cfg, err = config.normalize(top, "spec.lua", opts.dir)
    if not cfg then error(err, 2) end
    local core = opts.core or (opts.old and opts.old.core) or _M.core()
    local self = setmetatable({ core = core, cfg = cfg, slots = 0 }, Harness)
    local n = cfg.services.demo
    self.p = policy.build("demo", n.policies, n, core, opts.old and opts.old.p)
    if opts.connected ~= false then
        for i = 1, #n.upstreams do policy.endpoint_state(self.p, i, 1) end
    end
    return self
end

function Harness:reload(svc, opts)
    opts = opts or {}
    opts.old = self
    return _M.service(svc, opts)
end

function Harness:instance(name)
    for _, e in ipairs(self.p.instances) do
        if e.name == name then return e.instance end
    end
end

function Harness:set_connected(i, n)
    policy.endpoint_state(self.p, i, n)
end

function Harness:request(method, args, client)
    self.slots = self.slots + 1
    local slot = self.slots
    self.core.call_args = args or {}
    local v, a, b, c = policy.request(self.p, slot, client or _M.client(), method, 0,
        self.p.service.deadline)
    self.core.call_args = nil
    local r = { verdict = names[v], slot = slot, method = method }
    if v == policy.CONTINUE then
        r.endpoint, r.deadline = a, b
    elseif v == policy.REJECT then
        r.code, r.message, r.retry_after = a, b, c
    elseif v == policy.RESPOND then
        r.value = a
    elseif v == policy.RESPOND_RAW then
        r.value, r.decoded = a, mp.decode(a)
    end
    return r
end

function Harness:response(r, kind, o)
    o = o or {}
    local result = o.result
    if kind == "ok" and result ~= nil then result = mp.encode(result) end
    local sent = o.sent
    if sent == nil then sent = true end
    local v, value = policy.response(self.p, r.slot, kinds[kind], o.code, o.latency or 0.001,
        o.endpoint or r.endpoint or 0, result, o.attempt or 1, sent)
    local out = { verdict = v and names[v], value = value }
    if v == policy.RESPOND_RAW then out.decoded = mp.decode(value) end
    return out
end

function Harness:call(method, args, kind, o, client)
    local r = self:request(method, args, client)
    if r.verdict ~= "continue" then return r end
    return r, self:response(r, kind or "ok", o)
end

return _M
