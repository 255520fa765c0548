-- ghost.policy: load, validate and run the policies of a service.
--
-- A policy is a module (built-in: policies/<name>.lua; or a user file) shaped like a Kong
-- plugin: a table with `name`, `priority` (higher runs first), a `schema` for its options, a
-- constructor `new(conf, service)` returning the instance that keeps the policy's state, and
-- any of these phase functions:
--
--   decide(self, method, client, object, callback)
--                                 static decision that depends only on the method and the
--                                 client's identity: return nothing to allow, or code, message
--                                 to refuse. Cached per (identity, method, object, callback):
--                                 not re-run per call. `object` is true for a call on a remote
--                                 object (`method` is then the object's method or attribute
--                                 name); `callback` too for a callback (an upstream calling a
--                                 function or object that `client` passed).
--   access(self, ctx)             per call, before the call goes upstream: may ctx:reject(),
--                                 ctx:respond(), ctx:set_endpoint(), ctx:set_deadline().
--   response(self, ctx, outcome)  per call, after the answer (or failure): breakers, metrics,
--                                 caches; may ctx:respond() to replace a failure, or
--                                 ctx:retry(delay) to send the call again. Also run, with
--                                 outcome.kind "rejected" or "responded", for the policies whose
--                                 access phase saw a call that then never went upstream, so that
--                                 what an access phase took (a probe, a counter) is given back.
--   recover(self, ctx, code)      when an access phase rejected the call: may ctx:respond()
--                                 instead (a fallback answering for an open breaker).
--
-- A client's notification (no answer) meets the same decide and access phases, with
-- ctx.notification true; one that goes upstream is then over at once: the response phases
-- that saw it hear outcome.kind "notified" (no answer will come), so they give back what they
-- took, as for "rejected". Its slot is 0, shared by every notification.
--
-- A callback (an upstream of the service calling what a client passed) meets the decide
-- phases with `object` and `callback` true and the access phases with ctx.callback and
-- ctx.object true, as the client it goes to (ctx.client, ctx.identity). The built-in route,
-- breaker and fallback leave it alone (it goes to that client). No response phase follows: a
-- policy that took something in access hears outcome.kind "notified" at once.
--
-- docs/policies.md is the reference.
-- The C core calls request() and response() below once per call. Nothing here allocates per
-- call: ctx and outcome are reused (phases never overlap: they do not yield), and what a call
-- needs between its two phases is kept in arrays indexed by the call's slot.

local schema = require "ghost.schema"
local ffi = require "ffi"

local type, pairs, ipairs, pcall, error, tostring, setmetatable, require, loadstring, assert, unpack =
    type, pairs, ipairs, pcall, error, tostring, setmetatable, require, loadstring, assert, unpack
local sort, concat = table.sort, table.concat
local format = string.format
local searchpath = package.searchpath
local io_open = io.open

local _M = {}

-- In the gateway, the clocks are C functions the FFI can call from compiled code.
ffi.cdef [[
double gg_host_now(void *server);
double gg_host_time(void);
]]

local function clocks(core)
    if not core.server then return core.now, core.time end
    local ok = pcall(function() return ffi.C.gg_host_now end)
    if not ok then return core.now, core.time end
    local C, server = ffi.C, ffi.cast("void *", core.server)
    return function() return C.gg_host_now(server) end, function() return C.gg_host_time() end
end

-- Verdicts returned to C and the gateway error codes a policy may use (docs/protocol.md):
-- both come from C (ghost.consts), the one place they are written.
local consts = require "ghost.consts"
local V = consts.verdicts
local CONTINUE, REJECT, RESPOND, RESPOND_RAW, RETRY = V.CONTINUE, V.REJECT, V.RESPOND, V.RESPOND_RAW, V.RETRY
_M.CONTINUE, _M.REJECT, _M.RESPOND, _M.RESPOND_RAW, _M.RETRY = CONTINUE, REJECT, RESPOND, RESPOND_RAW, RETRY

_M.codes = consts.errors
local codes = _M.codes
local known_code = {}
for _, c in pairs(codes) do known_code[c] = true end

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

-- User policy modules by file: a file whose text did not change gives the same module table
-- on reload, so that its instances (and their state) can be kept like the built-ins'.
local user_modules = {}

local function load_module(name, path)
    if builtin[name] then
        local ok, mod = pcall(require, "policies." .. name)
        if not ok then return nil, mod end
        return mod
    end
    local file = path and searchpath(name, path)
    if not file then
        return nil, format("no policy named '%s' (built-in: guard, auth, route, breaker, retry, "
            .. "ratelimit, fallback; user policies are found with policy_path %s)", name,
            tostring(path))
    end
    local f, err = io_open(file, "rb")
    if not f then return nil, err end
    local src = f:read("*a")
    f:close()
    local cached = user_modules[file]
    if cached and cached.src == src then return cached.mod end
    local chunk
    chunk, err = loadstring(src, "@" .. file)
    if not chunk then return nil, err end
    local ok, mod = pcall(chunk, name)
    if not ok then return nil, format("%s: %s", file, tostring(mod)) end
    user_modules[file] = { src = src, mod = mod }
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

-- Refuse the call with a gateway error: code is a name ("forbidden") or a number of
-- _M.codes. Anything else is the policy's bug, raised at its line (the call then fails as for
-- any policy error: 500 internal, the traceback in the log). retry_after (seconds) is added
-- to the error object.
function ctx_mt:reject(code, message, retry_after)
    local c = code
    if type(c) == "string" then c = codes[c] end
    if not known_code[c] then error(format("ctx:reject: unknown error code %s", tostring(code)), 2) end
    self.verdict, self.code, self.message, self.retry_after = REJECT, c, message, retry_after
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
    if not a then
        a = self._core.args()
        self._args = a
    end
    return a
end

-- The call's params as the MessagePack bytes the client sent (a cheap cache key).
function ctx_mt:args_raw()
    local a = self._args_raw
    if not a then
        a = self._core.args_raw()
        self._args_raw = a
    end
    return a
end

---------------------------------------------------------------------------------------------
-- Building a service's pipeline

-- Higher priority first; equal priorities keep the order of the config's list.
local function by_priority(a, b)
    local pa, pb = a.spec.module.priority or 0, b.spec.module.priority or 0
    if pa ~= pb then return pa > pb end
    return a.index < b.index
end

-- The instance of the previous pipeline to keep for spec `s`: same module, same options, not
-- already taken by an earlier spec of the same policy.
local function previous(old, s, taken)
    if not (old and old.instances) then return nil end
    for _, e in ipairs(old.instances) do
        if not taken[e] and e.name == s.name and e.module == s.module and schema.equal(e.conf, s.conf) then
            taken[e] = true
            return e.instance
        end
    end
end

-- A kept instance moves to its new service table (and runs its reload hook).
local function move(inst, svc)
    inst.service = svc
    if inst.reload then inst:reload(svc) end
end

--- Move the instances a reload keeps to their new pipelines: called once every pipeline of the
-- new config is built (build(..., moves)), so that a reload that fails half-way leaves the
-- running pipelines' instances as they were.
function _M.commit(moves)
    for i = 1, #moves, 2 do move(moves[i], moves[i + 1]) end
end

-- A phase's policies called in a row by a function made for this pipeline: every call site
-- then calls one known function (a loop over the list would call a different one at each
-- turn, which LuaJIT's traces cannot follow, and the calls would run in the interpreter).
-- `stop`: return at the first verdict. Returns the number of the last policy that ran (0 none).
local function compile(list, running, stop)
    local names, src = { "running" }, {}
    local values = { running }
    for k, e in ipairs(list) do
        names[#names + 1] = "f" .. k
        names[#names + 1] = "i" .. k
        values[#values + 1] = e[1]
        values[#values + 1] = e[2]
        src[#src + 1] = format("running[0] = %d; f%d(i%d, ctx, o)", e[3], k, k)
        if stop then src[#src + 1] = format("if ctx.verdict then return %d end", e[3]) end
    end
    local last = #list > 0 and list[#list][3] or 0
    local code = format("local %s = ...\nreturn function(ctx, o)\n%s\nreturn %d\nend",
        concat(names, ", "), concat(src, "\n"), last)
    return assert(loadstring(code, "=pipeline"))(unpack(values, 1, #values))
end

--- Build the pipeline of one service. `specs` are validated specs, `service` the normalised
-- service config (name, upstreams, deadline, ...), `core` the C functions (args, args_raw,
-- now, time, log). `old` is the same service's previous pipeline, on reload: instances of an
-- unchanged policy (same module, same options) are kept, with their state. With `moves` (a
-- list), moving the kept instances is left to commit(moves); without, it is done here.
function _M.build(name, specs, service, core, old, moves)
    local sorted = {}
    for i, s in ipairs(specs) do sorted[i] = { spec = s, index = i } end
    sort(sorted, by_priority)

    -- An endpoint's address is for showing (messages to clients, logs, /routes): a URL's query
    -- string, often a credential, is redacted by the core's rule.
    local show = core.show_address or function(a) return a end
    local endpoints = {}
    for i, addr in ipairs(service.upstreams) do
        endpoints[i] = { index = i, address = show(addr), connected = 0, open = false,
                         retry_at = 0, inflight = 0 }
    end
    local now, time = clocks(core)
    local svc = { name = name, endpoints = endpoints, deadline = service.deadline,
                  methods = service.methods, idempotent = service.idempotent, now = now,
                  time = time, log = core.log }

    local p = {
        name = name, service = svc, endpoints = endpoints,
        decide = {}, access = {}, response = {}, recover = {}, instances = {},
        decisions = {}, ndecisions = 0,
        call_method = {}, call_endpoint = {}, call_key = {}, call_client = {},
        -- Every field a call sets exists from the start (false, not nil): stores then update
        -- a slot instead of adding and removing keys, which compiled code does much faster.
        ctx = setmetatable({ service = name, endpoints = endpoints, _core = core, client = false,
                             address = false, identity = false, meta = false, method = false,
                             endpoint = 0, deadline = 0, slot = 0, notification = false,
                             verdict = false, _args = false,
                             _args_raw = false, code = false, message = false, retry_after = false,
                             value = false, probe = false, object = false, callback = false },
                           ctx_mt),
        outcome = { kind = false, ok = false, code = false, latency = 0, result = false,
                    attempt = 0, sent = false },
        core = core,
        wants_result = false, keeps_request = false,
        -- where the core's watchdog reads which policy is running (a scratch cell otherwise)
        running = core.current and ffi.cast("int32_t *", core.current) or ffi.new("int32_t[1]"),
    }
    local taken = {}
    for order, e in ipairs(sorted) do
        local s = e.spec
        local inst = previous(old, s, taken)
        if inst then
            if moves then
                moves[#moves + 1], moves[#moves + 2] = inst, svc
            else
                move(inst, svc)
            end
        else
            inst = s.module.new(s.conf, svc)
            if type(inst) ~= "table" then
                error(format("%s: policy '%s' new() must return a table", s.where, s.name), 0)
            end
        end
        local m = s.module
        local n = #p.instances + 1 -- its number, for the watchdog's report
        if m.decide then p.decide[#p.decide + 1] = { m.decide, inst, n } end
        -- an instance may opt out of a phase its module has (inst.wants_access = false)
        if m.access and inst.wants_access ~= false then
            p.access[#p.access + 1] = { m.access, inst, order }
        end
        if m.response and inst.wants_response ~= false then
            p.response[#p.response + 1] = { m.response, inst, order }
        end
        if m.recover then p.recover[#p.recover + 1] = { m.recover, inst, order } end
        if m.wants_result then p.wants_result = true end
        if m.keeps_request then p.keeps_request = true end
        p.instances[#p.instances + 1] = { name = s.name, module = m, conf = s.conf, instance = inst,
                                          where = s.where }
    end
    p.has_response = #p.response > 0
    -- the request phase also records what the response phase needs (method, client, args):
    -- a pipeline with only response phases (retry alone) still runs it
    p.has_request = #p.decide + #p.access > 0 or p.has_response
    p.run_access = compile(p.access, p.running, true)
    p.run_response = compile(p.response, p.running, false)
    return p
end

---------------------------------------------------------------------------------------------
-- Running the phases (called by the C core)

local function decide(p, method, client, object, callback)
    local running = p.running
    for i = 1, #p.decide do
        local d = p.decide[i]
        running[0] = d[3]
        local code, message = d[1](d[2], method, client, object, callback)
        if code then
            if type(code) == "string" then code = codes[code] end
            if not known_code[code] then code = codes.internal end
            return { code = code, message = message or "refused" }
        end
    end
    return true
end

local function set_client(ctx, client)
    ctx.client, ctx.address, ctx.identity, ctx.meta = client, client.address or false,
        client.identity or false, client.meta or false
end

-- The call ends in its request phase (rejected or answered by a policy): the response phases
-- of the policies that saw it (order <= last) hear it, so they can give back what they took.
local function abandon(p, ctx, last, kind, code)
    local o = p.outcome
    o.kind, o.ok, o.code, o.latency, o.result, o.attempt, o.sent = kind, false, code or false, 0,
        false, 0, false
    local verdict, value = ctx.verdict, ctx.value
    local response = p.response
    for i = 1, #response do
        local r = response[i]
        if r[3] > last then break end
        r[1](r[2], ctx, o)
    end
    ctx.verdict, ctx.value = verdict, value
end

-- The decide phases' verdict for (method, client): true, or { code, message }. Cached per
-- identity and method; the cache tables are made once per identity, never per call.
local function decided(p, method, client, object, callback)
    local ident = client.identity_key or ""
    local cache = p.decisions[ident]
    if not cache then
        if p.ndecisions < MAX_CACHED_IDENTITIES then
            cache = { n = 0 }
            p.decisions[ident] = cache
            p.ndecisions = p.ndecisions + 1
        end
    end
    -- no plain method name has a control character
    local key = callback and "\1" .. method or object and "\0" .. method or method
    local d = cache and cache[key]
    if d == nil then
        d = decide(p, method, client, object, callback)
        if cache and cache.n < MAX_CACHED_METHODS then
            cache[key] = d
            cache.n = cache.n + 1
        end
    end
    return d
end

--- Whether the decide phases let `client` call `method` (what sys.describe shows it); object:
-- a method of the service's remote objects.
function _M.allows(p, method, client, object)
    return #p.decide == 0 or decided(p, method, client, object == true) == true
end

--- Request phase. Returns a verdict and its values:
--   CONTINUE, endpoint, deadline    the call goes upstream (endpoint 0: the core chooses)
--   REJECT, code, message, retry_after
--   RESPOND, value | RESPOND_RAW, bytes
-- slot 0: a notification, which will have no response phase. object: a call on a remote
-- object (method is its method or attribute name; ctx.object is true).
function _M.request(p, slot, client, method, endpoint, deadline, object)
    object = object == true
    if #p.decide > 0 then
        local d = decided(p, method, client, object)
        if d ~= true then return REJECT, d.code, d.message end
    end
    local ctx = p.ctx
    set_client(ctx, client)
    ctx.method, ctx.endpoint, ctx.deadline, ctx.object, ctx.callback = method, endpoint, deadline,
        object, false
    ctx.slot, ctx.notification, ctx.verdict, ctx._args, ctx._args_raw = slot, slot == 0, false,
        false, false
    ctx.code, ctx.message, ctx.retry_after, ctx.value = false, false, false, false
    local last = p.run_access(ctx)
    local v = ctx.verdict
    if v == REJECT and #p.recover > 0 then
        -- a rejection (an open breaker, no upstream) may still be answered from elsewhere
        ctx.verdict = false
        for i = 1, #p.recover do
            local r = p.recover[i]
            p.running[0] = r[3]
            r[1](r[2], ctx, ctx.code)
            if ctx.verdict then break end
        end
        if not ctx.verdict then ctx.verdict = REJECT end
        v = ctx.verdict
    end
    if v == REJECT then
        local code, message, retry_after = ctx.code or codes.internal, ctx.message or "refused",
            ctx.retry_after
        if p.has_response then abandon(p, ctx, last, "rejected", code) end
        return REJECT, code, message, retry_after
    end
    if v == RESPOND or v == RESPOND_RAW then
        if p.has_response then abandon(p, ctx, last, "responded") end
        return v, ctx.value
    end
    if slot == 0 then
        if p.has_response then abandon(p, ctx, last, "notified") end
        return CONTINUE, ctx.endpoint, ctx.deadline
    end
    if p.has_response then
        p.call_method[slot] = method
        p.call_endpoint[slot] = ctx.endpoint
        p.call_client[slot] = client
        p.call_key[slot] = ctx._args_raw or false
    end
    return CONTINUE, ctx.endpoint, ctx.deadline
end

--- A callback: an upstream of the service calls `method` on a function or object that
-- `client` passed. The decide phases, then the access phases with ctx.callback true; the
-- params are not offered (ctx:args() is empty). Returns REJECT, code, message, retry_after;
-- or CONTINUE (an answer or a retry a policy asked for does not apply to a callback).
function _M.callback(p, client, method)
    if #p.decide > 0 then
        local d = decided(p, method, client, true, true)
        if d ~= true then return REJECT, d.code, d.message end
    end
    local ctx = p.ctx
    set_client(ctx, client)
    ctx.method, ctx.endpoint, ctx.deadline, ctx.object, ctx.callback = method, 0, 0, true, true
    ctx.slot, ctx.notification, ctx.verdict, ctx._args, ctx._args_raw = 0, false, false, false,
        false
    ctx.code, ctx.message, ctx.retry_after, ctx.value = false, false, false, false
    local last = p.run_access(ctx)
    if ctx.verdict == REJECT then
        local code = ctx.code or codes.internal
        if p.has_response then abandon(p, ctx, last, "rejected", code) end
        return REJECT, code, ctx.message or "refused", ctx.retry_after
    end
    if p.has_response then abandon(p, ctx, last, "notified") end
    return CONTINUE
end

local kinds = { [0] = "ok", "upstream_error", "gateway_error" }

--- Response phase. kind: 0 ok, 1 upstream error, 2 gateway error (code set). latency in
-- seconds. result: the raw result bytes when a policy asked for them (wants_result). attempt:
-- 1 for the first. sent: whether the call was written to an upstream connection.
-- Returns nothing (the answer stands), RESPOND(_RAW) with a replacement, or RETRY, delay.
function _M.response(p, slot, kind, code, latency, endpoint, result, attempt, sent)
    local ctx, o = p.ctx, p.outcome
    local client = p.call_client[slot]
    ctx.method = p.call_method[slot]
    if client then
        set_client(ctx, client)
    else
        ctx.client, ctx.address, ctx.identity, ctx.meta = false, false, false, false
    end
    ctx.endpoint, ctx.callback = endpoint, false
    ctx.slot, ctx.notification, ctx.verdict, ctx.value, ctx._args = slot, false, false, false, false
    ctx._args_raw = p.call_key[slot] or false
    o.kind, o.ok, o.code, o.latency, o.result, o.attempt, o.sent = kinds[kind], kind == 0,
        code or false, latency, result or false, attempt, sent == true
    p.run_response(ctx, o)
    local v = ctx.verdict
    if v ~= RETRY then
        p.call_method[slot], p.call_client[slot], p.call_key[slot], p.call_endpoint[slot] =
            nil, nil, nil, nil
    end
    o.result = false
    if v then return v, ctx.value end
end

--- The core reports that an endpoint's number of live connections changed.
function _M.endpoint_state(p, index, connected)
    local e = p.endpoints[index]
    if e then e.connected = connected end
end

--- The endpoints of a discover = true service changed (docs/scale-out.md): addrs[i] is the
-- address of the core's endpoint number i ("" for a free number), states[i] 0 live, 1 draining
-- (no longer registered: takes no new call), 2 free. The endpoint list is updated in place
-- (ctx.endpoints and every policy's view share it); a number whose address changed gets a new
-- entry; then each policy with a reload hook sees the list as after a reload (a breaker keeps
-- the state of an address it knew).
function _M.set_endpoints(p, addrs, states)
    local eps = p.endpoints
    local show = p.core.show_address or function(a) return a end
    local n = #addrs
    for i = 1, n do
        local addr = addrs[i] ~= "" and show(addrs[i]) or ""
        local e = eps[i]
        if not e or e.address ~= addr then
            e = { index = i, address = addr, connected = 0, open = false, retry_at = 0,
                  inflight = 0, removed = false }
            eps[i] = e
        end
        e.removed = states[i] ~= 0
        if e.removed then e.connected = 0 end
    end
    for i = #eps, n + 1, -1 do eps[i] = nil end
    for _, inst in ipairs(p.instances) do
        if inst.instance.reload then inst.instance:reload(p.service) end
    end
end

-- Ordered list of the policy names of a pipeline (for logs and /routes).
function _M.names(p)
    local out = {}
    for i, e in ipairs(p.instances) do out[i] = e.name end
    return concat(out, ",")
end

return _M
