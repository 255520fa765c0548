-- ghost.policy: load, validate and run the policies of a service.
--
-- A policy is a module (built-in: policies/<name>.lua; or a user file) shaped like a Kong
-- plugin: a table with `name`, `priority` (higher runs first), a `schema` for its options, a
-- constructor `new(conf, service)` returning the instance that keeps the policy's state, and
-- any of these phase functions:
--
--   decide(self, method, client)  static decision that depends only on the method and the
--                                 client's identity: return nothing to allow, or code, message
--                                 to refuse. Cached per (identity, method): not re-run per call.
--   access(self, ctx)             per call, before the call goes upstream: may ctx:reject(),
--                                 ctx:respond(), ctx:set_endpoint(), ctx:set_deadline().
--   response(self, ctx, outcome)  per call, after the answer (or failure): breakers, metrics,
--                                 caches; may ctx:respond() to replace a failure, or
--                                 ctx:retry(delay) to send the call again.
--   recover(self, ctx, code)      when an access phase rejected the call: may ctx:respond()
--                                 instead (a fallback answering for an open breaker).
--
-- The C core calls request() and response() below once per call. Nothing here allocates per
-- call: ctx and outcome are reused (phases never overlap: they do not yield), and what a call
-- needs between its two phases is kept in arrays indexed by the call's slot.

local schema = require "ghost.schema"

local type, pairs, ipairs, pcall, error, tostring, setmetatable, require =
    type, pairs, ipairs, pcall, error, tostring, setmetatable, require
local sort, concat = table.sort, table.concat
local format = string.format
local loadfile, searchpath = loadfile, package.searchpath

local _M = {}

-- Verdicts returned to C.
local CONTINUE, REJECT, RESPOND, RESPOND_RAW, RETRY = 0, 1, 2, 3, 4
_M.CONTINUE, _M.REJECT, _M.RESPOND, _M.RESPOND_RAW, _M.RETRY = CONTINUE, REJECT, RESPOND, RESPOND_RAW, RETRY

-- Gateway error codes a policy may use (docs/protocol.md).
_M.codes = {
    bad_request = 400, unauthenticated = 401, forbidden = 403, no_such_service = 404,
    too_large = 413, rate_limited = 429, internal = 500, not_supported = 501,
    upstream_unavailable = 502, overloaded = 503, deadline_exceeded = 504, circuit_open = 530,
    shutting_down = 531,
}
local codes = _M.codes

-- How many (identity, method) decisions one service caches per identity; beyond that the
-- decision is computed per call (a client sending random method names cannot grow memory).
local MAX_CACHED_METHODS = 4096
local MAX_CACHED_IDENTITIES = 4096

---------------------------------------------------------------------------------------------
-- Loading and validation (at config load time: `ghostgate check` runs this too)

local builtin = {
    guard = true, auth = true, route = true, breaker = true, retry = true, ratelimit = true,
    fallback = true,
}
_M.builtin = builtin

local function load_module(name, path)
    if builtin[name] then
        local ok, mod = pcall(require, "policies." .. name)
        if not ok then return nil, mod end
        return mod
    end
    local file = path and searchpath(name, path)
    if not file then
        return nil, format("no policy named '%s' (built-in: guard, auth, route, breaker, retry, "
            .. "ratelimit, fallback; user policies are found with policy_path)", name)
    end
    local chunk, err = loadfile(file)
    if not chunk then return nil, err end
    local ok, mod = pcall(chunk, name)
    if not ok then return nil, format("%s: %s", file, tostring(mod)) end
    return mod
end

local function check_module(mod, name)
    if type(mod) ~= "table" then return nil, format("policy '%s' must return a table", name) end
    if type(mod.new) ~= "function" then
        return nil, format("policy '%s' has no new(conf, service) function", name)
    end
    if not (mod.access or mod.response or mod.decide) then
        return nil, format("policy '%s' has no phase (decide, access or response)", name)
    end
    return true
end

--- A policy spec as written in a config: "name", { name = "x", ... } or a call of the config
-- environment's policy constructors, `guard { ... }`, which also records the file and line.
-- Returns { name, module, conf, where } or nil, "where: reason".
function _M.validate(spec, where, path)
    local name, opts, at
    if type(spec) == "string" then
        name, opts = spec, {}
    elseif type(spec) == "table" then
        name, at = spec.name, spec.__where
        opts = {}
        for k, v in pairs(spec) do
            if k ~= "name" and k ~= "__where" then opts[k] = v end
        end
    else
        return nil, format("%s: a policy is a name or a table, got %s", where, type(spec))
    end
    where = at or where
    if type(name) ~= "string" then return nil, format("%s: policy needs a name", where) end
    local mod, err = load_module(name, path)
    if not mod then return nil, format("%s: %s", where, err) end
    local ok
    ok, err = check_module(mod, name)
    if not ok then return nil, format("%s: %s", where, err) end
    local conf
    conf, err = schema.validate(mod.schema or { type = "record", fields = {} }, opts, name)
    if err then return nil, format("%s: %s", where, err) end
    return { name = name, module = mod, conf = conf, where = where }
end

--- The constructors a config file sees: `guard { allow = { "get_*" } }` returns a spec that
-- remembers where it was written, so errors can name the line.
function _M.constructors(getinfo)
    local env = {}
    for name in pairs(builtin) do
        env[name] = function(opts)
            local info = getinfo(2, "Sl")
            local spec = { name = name }
            if type(opts) == "table" then
                for k, v in pairs(opts) do spec[k] = v end
            end
            spec.__where = info and format("%s:%d", info.short_src, info.currentline) or nil
            return spec
        end
    end
    env.policy = function(name)
        return function(opts)
            local spec = env.guard(opts) -- reuse the line capture
            spec.name = name
            local info = getinfo(2, "Sl")
            spec.__where = info and format("%s:%d", info.short_src, info.currentline) or nil
            return spec
        end
    end
    return env
end

---------------------------------------------------------------------------------------------
-- The per-call context

local ctx_mt = {}
ctx_mt.__index = ctx_mt

-- Refuse the call with a gateway error. retry_after (seconds) is added to the error object.
function ctx_mt:reject(code, message, retry_after)
    if type(code) == "string" then code = codes[code] or codes.internal end
    self.verdict, self.code, self.message, self.retry_after = REJECT, code, message, retry_after
end

function ctx_mt:respond(value)
    self.verdict, self.value = RESPOND, value
end

-- Answer with a result that is already MessagePack (a cached answer).
function ctx_mt:respond_raw(bytes)
    self.verdict, self.value = RESPOND_RAW, bytes
end

function ctx_mt:retry(delay)
    self.verdict, self.value = RETRY, delay or 0
end

function ctx_mt:set_endpoint(i)
    self.endpoint = i
end

function ctx_mt:set_deadline(seconds)
    self.deadline = seconds
end

-- The call's params, decoded on first use (the C fast path never decodes them).
function ctx_mt:args()
    local a = self._args
    if a == nil then
        a = self._core.args()
        self._args = a
    end
    return a
end

-- The call's params as the MessagePack bytes the client sent (a cheap cache key).
function ctx_mt:args_raw()
    local a = self._args_raw
    if a == nil then
        a = self._core.args_raw()
        self._args_raw = a
    end
    return a
end

---------------------------------------------------------------------------------------------
-- Building a service's pipeline

local function by_priority(a, b)
    return (a.module.priority or 0) > (b.module.priority or 0)
end

--- Build the pipeline of one service. `specs` are validated specs, `service` the normalised
-- service config (name, upstreams, deadline, ...), `core` the C functions (args, args_raw,
-- now). `old` is the same service's previous pipeline, on reload: instances whose policy
-- and options did not change are kept, with their state.
function _M.build(name, specs, service, core, old)
    local sorted = {}
    for i, s in ipairs(specs) do sorted[i] = s end
    sort(sorted, by_priority)

    local endpoints = {}
    for i, addr in ipairs(service.upstreams) do
        endpoints[i] = { index = i, address = addr, connected = 0, open = false, inflight = 0 }
    end
    local svc = { name = name, endpoints = endpoints, deadline = service.deadline,
                  methods = service.methods, idempotent = service.idempotent, now = core.now,
                  time = core.time }

    local p = {
        name = name, service = svc, endpoints = endpoints,
        decide = {}, access = {}, response = {}, recover = {}, instances = {},
        decisions = {}, ndecisions = 0,
        call_method = {}, call_endpoint = {}, call_key = {}, call_client = {},
        ctx = setmetatable({ service = name, endpoints = endpoints, _core = core }, ctx_mt),
        outcome = {},
        core = core,
        wants_result = false,
    }
    for _, s in ipairs(sorted) do
        local inst
        local prev = old and old.by_spec and old.by_spec[s.name]
        if prev and schema.equal(prev.conf, s.conf) then
            inst = prev.instance
            inst.service = svc
            if inst.reload then inst:reload(svc) end
        else
            inst = s.module.new(s.conf, svc)
            if type(inst) ~= "table" then
                error(format("%s: policy '%s' new() must return a table", s.where, s.name), 0)
            end
        end
        local m = s.module
        if m.decide then p.decide[#p.decide + 1] = { m.decide, inst } end
        -- an instance may opt out of a phase its module has (inst.wants_access = false)
        if m.access and inst.wants_access ~= false then p.access[#p.access + 1] = { m.access, inst } end
        if m.response and inst.wants_response ~= false then
            p.response[#p.response + 1] = { m.response, inst }
        end
        if m.recover then p.recover[#p.recover + 1] = { m.recover, inst } end
        if m.wants_result then p.wants_result = true end
        p.instances[#p.instances + 1] = { name = s.name, conf = s.conf, instance = inst }
    end
    p.by_spec = {}
    for _, e in ipairs(p.instances) do p.by_spec[e.name] = e end
    p.has_request = #p.decide + #p.access > 0
    p.has_response = #p.response > 0
    return p
end

---------------------------------------------------------------------------------------------
-- Running the phases (called by the C core)

local function decide(p, method, client)
    for i = 1, #p.decide do
        local d = p.decide[i]
        local code, message = d[1](d[2], method, client)
        if code then return { code = code, message = message or "refused" } end
    end
    return true
end

--- Request phase. Returns a verdict and its values:
--   CONTINUE, endpoint, deadline    the call goes upstream (endpoint 0: the core chooses)
--   REJECT, code, message           answer with a gateway error
--   RESPOND, value | RESPOND_RAW, bytes
function _M.request(p, slot, client, method, endpoint, deadline)
    local d
    if #p.decide > 0 then
        local ident = client.identity_key or ""
        local cache = p.decisions[ident]
        if not cache then
            if p.ndecisions < MAX_CACHED_IDENTITIES then
                cache = { n = 0 }
                p.decisions[ident] = cache
                p.ndecisions = p.ndecisions + 1
            end
        end
        d = cache and cache[method]
        if d == nil then
            d = decide(p, method, client)
            if cache and cache.n < MAX_CACHED_METHODS then
                cache[method] = d
                cache.n = cache.n + 1
            end
        end
        if d ~= true then return REJECT, d.code, d.message end
    end
    local ctx = p.ctx
    ctx.method, ctx.client, ctx.endpoint, ctx.deadline = method, client, endpoint, deadline
    ctx.slot, ctx.verdict, ctx._args, ctx._args_raw = slot, nil, nil, nil
    ctx.code, ctx.message, ctx.retry_after, ctx.value, ctx.probe = nil, nil, nil, nil, nil
    local access = p.access
    for i = 1, #access do
        local a = access[i]
        a[1](a[2], ctx)
        if ctx.verdict then break end
    end
    local v = ctx.verdict
    if v == REJECT and #p.recover > 0 then
        -- a rejection (an open breaker, no upstream) may still be answered from elsewhere
        ctx.verdict = nil
        for i = 1, #p.recover do
            local r = p.recover[i]
            r[1](r[2], ctx, ctx.code)
            if ctx.verdict then break end
        end
        if not ctx.verdict then ctx.verdict = REJECT end
        v = ctx.verdict
    end
    if v == REJECT then
        return REJECT, ctx.code or codes.internal, ctx.message or "refused", ctx.retry_after
    end
    if v == RESPOND or v == RESPOND_RAW then return v, ctx.value end
    if p.has_response then
        p.call_method[slot] = method
        p.call_endpoint[slot] = ctx.endpoint
        p.call_client[slot] = client
        p.call_key[slot] = ctx._args_raw or false
    end
    return CONTINUE, ctx.endpoint, ctx.deadline
end

local kinds = { [0] = "ok", "upstream_error", "gateway_error" }

--- Response phase. kind: 0 ok, 1 upstream error, 2 gateway error (code set). latency in
-- seconds. result: the raw result bytes when a policy asked for them (wants_result).
-- Returns nothing (the answer stands), RESPOND(_RAW) with a replacement, or RETRY, delay.
function _M.response(p, slot, kind, code, latency, endpoint, result, attempt)
    local ctx, o = p.ctx, p.outcome
    ctx.method = p.call_method[slot]
    ctx.client = p.call_client[slot]
    ctx.endpoint = endpoint
    ctx.slot, ctx.verdict, ctx._args = slot, nil, nil
    ctx._args_raw = p.call_key[slot] or nil
    o.kind, o.ok, o.code, o.latency, o.result, o.attempt = kinds[kind], kind == 0, code, latency,
        result, attempt
    local response = p.response
    for i = 1, #response do
        local r = response[i]
        r[1](r[2], ctx, o)
    end
    local v = ctx.verdict
    if v ~= RETRY then
        p.call_method[slot], p.call_client[slot], p.call_key[slot] = nil, nil, nil
    end
    o.result = nil
    if v then return v, ctx.value end
end

--- The core reports that an endpoint's number of live connections changed.
function _M.endpoint_state(p, index, connected)
    local e = p.endpoints[index]
    if e then e.connected = connected end
end

-- Ordered list of the policy names of a pipeline (for logs and /routes).
function _M.names(p)
    local out = {}
    for i, e in ipairs(p.instances) do out[i] = e.name end
    return concat(out, ",")
end

return _M
