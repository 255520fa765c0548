-- The policy runtime (lua/ghost/policy.lua) in plain LuaJIT with a fake core: how policies are
-- loaded and validated, in which order their phases run, what ctx and outcome hold, how
-- verdicts travel back to the core, what is cached, and what a reload keeps.
local kit = require "spec.support.policy_kit"
local policy = kit.policy

-- A user policy module (a table, as a policy file returns it) that records what it sees.
local function recorder(name, priority, extra)
    local mod = { name = name, priority = priority, schema = { type = "record", fields = {} } }
    mod.new = function(conf, service)
        return { conf = conf, service = service, seen = {}, n = 0 }
    end
    mod.access = function(self, ctx)
        self.n = self.n + 1
        self.seen[#self.seen + 1] = "access:" .. ctx.method
    end
    mod.response = function(self, ctx, o)
        self.seen[#self.seen + 1] = "response:" .. tostring(ctx.method) .. ":" .. tostring(o.kind)
    end
    for k, v in pairs(extra or {}) do mod[k] = v end
    return mod
end

-- A pipeline of already validated specs built directly (modules given as tables).
local function pipeline(mods, core, old, upstreams)
    local specs = {}
    for i, m in ipairs(mods) do
        specs[i] = { name = m.name, module = m, conf = m.conf or {}, where = "spec:" .. i }
    end
    core = core or kit.core()
    local p = policy.build("demo", specs, { upstreams = upstreams or { "tcp://127.0.0.1:1" }, deadline = 5 },
        core, old)
    for i = 1, #p.endpoints do policy.endpoint_state(p, i, 1) end
    return p, core
end

local function request(p, core, slot, method, args, client)
    core.call_args = args or {}
    local v, a, b, c = policy.request(p, slot, client or kit.client(), method, 0, 5)
    core.call_args = nil
    return v, a, b, c
end

describe("Policy runtime: loading", function()
    it("accepts a policy as a name, a table with a name, or a constructor call", function()
        local s = assert(kit.validate("guard"))
        assert.equal("guard", s.name)
        assert.same({}, s.conf.deny)
        s = assert(kit.validate({ name = "breaker", failures = 3 }))
        assert.equal(3, s.conf.failures)
        assert.equal(5, s.conf.cooldown) -- defaults filled in
        local env = policy.constructors(debug.getinfo)
        s = assert(kit.validate(env.ratelimit { rate = 10 }))
        assert.equal(10, s.conf.rate)
        assert.matches("policy_runtime_spec.lua:%d+$", s.where)
    end)

    it("names the file and line of the constructor call and the reason for a bad option", function()
        local env = policy.constructors(debug.getinfo)
        local line = debug.getinfo(1, "l").currentline + 1
        local spec = env.guard { alow = { "x" } }
        local s, err = kit.validate(spec)
        assert.is_nil(s)
        assert.equal(("spec/01-unit/policy_runtime_spec.lua:%d: guard: unknown option 'alow'; "
            .. "did you mean 'allow'?"):format(line),
            err:gsub("^.-(spec/01%-unit/)", "%1"))
    end)

    it("refuses options of the wrong type, out of range, or not among the choices", function()
        local _, err = kit.validate({ name = "breaker", failures = "many" })
        assert.equal("spec: breaker.failures: expected an integer, got string \"many\"", err)
        _, err = kit.validate({ name = "breaker", failures = 0 })
        assert.equal("spec: breaker.failures: must be at least 1", err)
        _, err = kit.validate({ name = "route", strategy = "random" })
        assert.matches("route.strategy: must be one of round_robin, weighted, least_outstanding, hash",
            err, 1, true)
        _, err = kit.validate({ name = "ratelimit" })
        assert.equal("spec: ratelimit.rate: is required", err)
    end)

    it("refuses an unknown policy name, saying where user policies are searched", function()
        local _, err = kit.validate("nosuch", "/nowhere/?.lua")
        assert.matches("^spec: no policy named 'nosuch'", err)
        assert.matches("/nowhere/?.lua", err, 1, true)
    end)

    it("loads a user policy from policy_path and refuses one without new() or without a phase", function()
        local dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -p " .. dir))
        local function write(name, src)
            local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
            f:write(src)
            f:close()
        end
        write("good", [[return { name = "good", new = function() return {} end,
            access = function() end, schema = { type = "record", fields = { n = { type = "integer" } } } }]])
        write("nonew", [[return { access = function() end }]])
        write("nophase", [[return { new = function() return {} end }]])
        write("raises", [[error("broken at load")]])
        local path = dir .. "/?.lua"
        local s = assert(kit.validate({ name = "good", n = 2 }, path))
        assert.equal(2, s.conf.n)
        local _, err = kit.validate({ name = "good", n = "x" }, path)
        assert.equal("spec: good.n: expected an integer, got string \"x\"", err)
        _, err = kit.validate("nonew", path)
        assert.equal("spec: policy 'nonew' has no new(conf, service) function", err)
        _, err = kit.validate("nophase", path)
        assert.equal("spec: policy 'nophase' has no phase (decide, access or response)", err)
        _, err = kit.validate("raises", path)
        assert.matches("raises.lua:1: broken at load", err, 1, true)
        os.execute("rm -rf " .. dir)
    end)

    it("resolves a relative policy_path from the config file's directory", function()
        local cfg = assert(kit.config.normalize({ policy_path = "./mine/?.lua;/abs/?.lua" }, "x", "/etc/gg"))
        assert.equal("/etc/gg/mine/?.lua;/abs/?.lua", cfg.policy_path)
    end)
end)

describe("Policy runtime: the request phase", function()
    it("runs access phases by priority, higher first; equal priorities in config order", function()
        local order = {}
        local function mod(name, prio)
            return recorder(name, prio, { access = function() order[#order + 1] = name end })
        end
        local p, core = pipeline({ mod("low", 1), mod("first", 5), mod("high", 9), mod("second", 5) })
        assert.equal(policy.CONTINUE, (request(p, core, 1, "m")))
        assert.same({ "high", "first", "second", "low" }, order)
        assert.equal("high,first,second,low", policy.names(p))
    end)

    it("gives ctx the service, method, client address, identity, metadata, deadline and slot", function()
        local got
        local p, core = pipeline({ recorder("r", 1, { access = function(_, ctx)
            got = { service = ctx.service, method = ctx.method, address = ctx.address,
                    identity = ctx.identity,
                    meta = ctx.meta, deadline = ctx.deadline, slot = ctx.slot, endpoint = ctx.endpoint,
                    client = ctx.client }
        end }) })
        local client = kit.client({ identity = "ci", meta = { tenant = "t1" } })
        request(p, core, 7, "get_user", { 1 }, client)
        assert.same({ service = "demo", method = "get_user", address = "127.0.0.1:40000", identity = "ci",
                      meta = { tenant = "t1" }, deadline = 5, slot = 7, endpoint = 0, client = client }, got)
    end)

    it("decodes the params only when a policy asks, once per call", function()
        local calls, seen = 0, {}
        local p, core = pipeline({ recorder("a", 2, { access = function(_, ctx)
            if ctx.method == "hash_me" then seen[#seen + 1] = ctx:args()[1] end
        end }), recorder("b", 1, { access = function(_, ctx)
            if ctx.method == "hash_me" then seen[#seen + 1] = ctx:args()[1] end
        end }) })
        local args = core.args
        core.args = function()
            calls = calls + 1
            return args()
        end
        request(p, core, 1, "plain", { "x" })
        assert.equal(0, calls)
        request(p, core, 1, "hash_me", { "k1" })
        assert.equal(1, calls)
        assert.same({ "k1", "k1" }, seen)
        request(p, core, 1, "hash_me", { "k2" })
        assert.equal(2, calls)
        assert.same({ "k1", "k1", "k2", "k2" }, seen)
    end)

    it("stops at the first verdict: reject, respond, respond_raw", function()
        local after = recorder("after", 1)
        local verdict
        local first = recorder("first", 2, { access = function(_, ctx)
            if verdict == "reject" then ctx:reject("forbidden", "no", 2.5) end
            if verdict == "respond" then ctx:respond({ cached = true }) end
            if verdict == "raw" then ctx:respond_raw("\195") end
        end })
        local p, core = pipeline({ first, after })
        verdict = "reject"
        assert.same({ policy.REJECT, 403, "no", 2.5 }, { request(p, core, 1, "m") })
        verdict = "respond"
        assert.same({ policy.RESPOND, { cached = true } }, { request(p, core, 1, "m") })
        verdict = "raw"
        assert.same({ policy.RESPOND_RAW, "\195" }, { request(p, core, 1, "m") })
        assert.same({}, p.instances[2].instance.seen)
        verdict = nil
        assert.same({ policy.CONTINUE, 0, 5 }, { request(p, core, 1, "m") })
        assert.same({ "access:m" }, p.instances[2].instance.seen)
    end)

    it("maps reject codes: names and known numbers as given", function()
        local code
        local p, core = pipeline({ recorder("r", 1, {
            access = function(_, ctx) ctx:reject(code, "m") end,
        }) })
        for given, want in pairs({ unauthenticated = 401, rate_limited = 429, circuit_open = 530, [403] = 403,
                                   [504] = 504, internal = 500 }) do
            code = given
            local _, got = request(p, core, 1, "m")
            assert.equal(want, got, tostring(given))
        end
    end)

    it("raises at the policy's line when ctx:reject gets a name or number not in the table", function()
        local code, line
        local p, core = pipeline({ recorder("r", 1, {
            access = function(_, ctx)
                line = debug.getinfo(1, "l").currentline + 1
                ctx:reject(code, "m")
            end,
        }) })
        for _, given in ipairs({ "nope", 999, 418, "Forbidden", false }) do
            code = given
            local ok, err = pcall(request, p, core, 1, "m")
            assert.is_false(ok, tostring(given))
            assert.equal(("spec/01-unit/policy_runtime_spec.lua:%d: ctx:reject: unknown error code %s")
                :format(line, tostring(given)), err:match("spec/01%-unit/.*$"))
        end
        code = nil
        local ok, err = pcall(request, p, core, 1, "m")
        assert.is_false(ok)
        assert.matches("policy_runtime_spec.lua:%d+: ctx:reject: unknown error code nil$", err)
    end)

    it("lets a policy choose the endpoint and change the deadline", function()
        local p, core = pipeline({ recorder("r", 1, { access = function(_, ctx)
            ctx:set_endpoint(2)
            ctx:set_deadline(ctx.deadline / 10)
        end }) }, nil, nil, { "tcp://127.0.0.1:1", "tcp://127.0.0.1:2" })
        assert.same({ policy.CONTINUE, 2, 0.5 }, { request(p, core, 1, "m") })
    end)

    it("lets recover phases answer a rejected call instead", function()
        local p, core = pipeline({
            recorder("fb", 3, { access = false, recover = function(_, ctx, code)
                if code == 530 then ctx:respond("from fallback") end
            end }),
            recorder("br", 1, { access = function(_, ctx)
                ctx:reject(ctx.method == "open" and 530 or 429, "refused", 1)
            end }),
        })
        assert.same({ policy.RESPOND, "from fallback" }, { request(p, core, 1, "open") })
        assert.same({ policy.REJECT, 429, "refused", 1 }, { request(p, core, 1, "limited") })
    end)
end)

describe("Policy runtime: decide", function()
    it("is cached per identity and method: not re-run per call", function()
        local runs = 0
        local p, core = pipeline({ recorder("g", 1, { access = false, decide = function(_, method, client)
            runs = runs + 1
            if method == "secret" then return 403, "no" end
            if client.identity == "ro" and method == "write" then return "forbidden", "read-only" end
        end }) })
        for _ = 1, 5 do
            assert.equal(policy.CONTINUE, (request(p, core, 1, "read")))
            assert.same({ policy.REJECT, 403, "no" }, { request(p, core, 1, "secret") })
        end
        assert.equal(2, runs)
        local ro = kit.client({ identity = "ro", identity_key = "k:ro" })
        for _ = 1, 3 do
            assert.same({ policy.REJECT, 403, "read-only" }, { request(p, core, 1, "write", {}, ro) })
        end
        assert.equal(3, runs)
        assert.equal(policy.CONTINUE, (request(p, core, 1, "write")))
        assert.equal(4, runs)
    end)

    it("is bounded: a client sending random method names cannot grow it past 4096 per identity", function()
        local p, core = pipeline({ recorder("g", 1, { access = false, decide = function() end }) })
        for i = 1, 5000 do request(p, core, 1, "m" .. i) end
        assert.equal(4096, p.decisions[""].n)
    end)
end)

describe("Policy runtime: the response phase", function()
    it("gives the outcome: kind, ok, code, latency, attempt, sent, result; and the call's method", function()
        local got = {}
        local p, core = pipeline({ recorder("r", 1, { wants_result = true, response = function(_, ctx, o)
            got[#got + 1] = { method = ctx.method, endpoint = ctx.endpoint, kind = o.kind, ok = o.ok,
                              code = o.code, latency = o.latency, attempt = o.attempt, sent = o.sent,
                              result = o.result, identity = ctx.identity }
        end }) })
        assert.is_true(p.wants_result)
        local client = kit.client({ identity = "ci" })
        request(p, core, 3, "get", {}, client)
        assert.is_nil(policy.response(p, 3, 0, nil, 0.25, 1, "\1", 1, true))
        request(p, core, 4, "put", {}, client)
        policy.response(p, 4, 1, nil, 0.5, 1, nil, 1, true)
        request(p, core, 5, "del", {}, client)
        policy.response(p, 5, 2, 502, 0.01, 1, nil, 2, false)
        assert.same({
            -- code and result are false, not nil, when there is none (the runtime keeps the
            -- outcome's fields in place between calls)
            { method = "get", endpoint = 1, kind = "ok", ok = true, code = false, latency = 0.25, attempt = 1,
              sent = true, result = "\1", identity = "ci" },
            { method = "put", endpoint = 1, kind = "upstream_error", ok = false, code = false, latency = 0.5,
              attempt = 1, sent = true, result = false, identity = "ci" },
            { method = "del", endpoint = 1, kind = "gateway_error", ok = false, code = 502, latency = 0.01,
              attempt = 2, sent = false, result = false, identity = "ci" },
        }, got)
    end)

    it("runs the request phase even when only response phases exist: it records the call", function()
        local h = kit.service({ policies = { { name = "retry" } } })
        assert.is_true(h.p.has_request)
        assert.is_true(h.p.has_response)
        local p = pipeline({ recorder("decide-only", 1, { access = false, response = false,
                                                           decide = function() end }) })
        assert.is_true(p.has_request)
        assert.is_false(p.has_response)
    end)

    it("returns a policy's verdict: a replacement answer or a retry", function()
        local p, core = pipeline({ recorder("r", 1, { response = function(_, ctx, o)
            if o.code == 502 then ctx:retry(0.1) elseif o.code == 504 then ctx:respond("stale") end
        end }) })
        request(p, core, 1, "m")
        assert.same({ policy.RETRY, 0.1 }, { policy.response(p, 1, 2, 502, 0, 1, nil, 1, false) })
        -- a retried call keeps its per-call state for the next attempt
        assert.equal("m", p.call_method[1])
        assert.same({ policy.RESPOND, "stale" }, { policy.response(p, 1, 2, 504, 0, 1, nil, 2, true) })
        assert.is_nil(p.call_method[1])
    end)

    it("keeps the raw params of the request phase for the response phase (ctx:args_raw)", function()
        local keys = {}
        local p, core = pipeline({ recorder("r", 1, {
            access = function(_, ctx) ctx:args_raw() end,
            response = function(_, ctx) keys[#keys + 1] = ctx:args_raw() end,
        }) })
        request(p, core, 1, "m", { "a", 1 })
        request(p, core, 2, "m", { "b" })
        policy.response(p, 2, 0, nil, 0, 1, nil, 1, true)
        policy.response(p, 1, 0, nil, 0, 1, nil, 1, true)
        assert.same({ kit.mp.encode({ "b" }), kit.mp.encode({ "a", 1 }) }, keys)
    end)

    it("tells the policies that saw a call which never went upstream, and only those", function()
        local high, mid, low = recorder("high", 3), recorder("mid", 2), recorder("low", 1)
        mid.access = function(self, ctx)
            self.seen[#self.seen + 1] = "access:" .. ctx.method
            if ctx.method == "refuse" then ctx:reject(429, "slow down") end
            if ctx.method == "answer" then ctx:respond(1) end
        end
        local p, core = pipeline({ high, mid, low })
        assert.same({ policy.REJECT, 429, "slow down" }, { request(p, core, 1, "refuse") })
        assert.same({ policy.RESPOND, 1 }, { request(p, core, 2, "answer") })
        local want = { "access:refuse", "response:refuse:rejected", "access:answer",
                       "response:answer:responded" }
        assert.same(want, p.instances[1].instance.seen)
        assert.same(want, p.instances[2].instance.seen)
        assert.same({}, p.instances[3].instance.seen)
    end)
end)

describe("Policy runtime: notifications (slot 0)", function()
    it("run the decide and access phases with ctx.notification true, then end as \"notified\"", function()
        local flags = {}
        local rec = recorder("rec", 2, {
            decide = function(_, method)
                if method == "private" then return "forbidden", "no" end
            end,
        })
        local gate = recorder("gate", 1)
        gate.access = function(self, ctx)
            flags[#flags + 1] = ctx.notification
            self.seen[#self.seen + 1] = "access:" .. ctx.method
            if ctx:args()[1] == "deny" then ctx:reject(403, "denied") end
        end
        local p, core = pipeline({ rec, gate })
        assert.same({ policy.REJECT, 403, "no" }, { request(p, core, 0, "private") })
        assert.same({ policy.REJECT, 403, "denied" }, { request(p, core, 0, "op", { "deny" }) })
        assert.same({ policy.CONTINUE, 0, 5 }, { request(p, core, 0, "op", { "ok" }) })
        assert.same({ policy.CONTINUE, 0, 5 }, { request(p, core, 7, "op", { "ok" }) })
        assert.same({ true, true, false }, flags)
        -- a notification let through is over at once; a call waits for its response phase
        assert.same({ "access:op", "response:op:rejected", "access:op", "response:op:notified",
                      "access:op" }, p.instances[1].instance.seen)
        assert.is_nil(p.call_method[0])
        assert.equal("op", p.call_method[7])
    end)
end)

describe("Policy runtime: reload", function()
    it("keeps the instance (and its state) of a policy whose module and options did not change", function()
        local core = kit.core()
        local a = recorder("a", 2)
        local b = recorder("b", 1)
        b.conf = { limit = 1 }
        local p1 = pipeline({ a, b }, core)
        request(p1, core, 1, "m")
        local b2 = setmetatable({ conf = { limit = 2 } }, { __index = b })
        b2.new, b2.access, b2.response = b.new, b.access, b.response
        local p2 = pipeline({ a, b2 }, core, p1)
        assert.equal(p1.instances[1].instance, p2.instances[1].instance)
        assert.equal(1, p2.instances[1].instance.n)
        assert.are_not.equal(p1.instances[2].instance, p2.instances[2].instance)
        assert.equal(0, p2.instances[2].instance.n)
        -- the kept instance now serves the new service table
        assert.equal(p2.service, p2.instances[1].instance.service)
    end)

    it("keeps each of two instances of one policy with their own state", function()
        local h1 = kit.service({ policies = {
            { name = "ratelimit", rate = 1, burst = 1, by = "service" },
            { name = "ratelimit", rate = 1, burst = 2, by = "address" },
        } })
        local i1, i2 = h1.p.instances[1].instance, h1.p.instances[2].instance
        local h2 = h1:reload({ policies = {
            { name = "ratelimit", rate = 1, burst = 2, by = "address" },
            { name = "ratelimit", rate = 1, burst = 1, by = "service" },
        } })
        assert.equal(i2, h2.p.instances[1].instance)
        assert.equal(i1, h2.p.instances[2].instance)
    end)
end)

describe("Policy runtime: a reload that fails", function()
    it("leaves the instances it would have kept as they were (ghost.gateway.start)", function()
        local gateway = require "ghost.gateway"
        local dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -p " .. dir))
        local f = assert(io.open(dir .. "/flaky.lua", "w"))
        f:write([[return { name = "flaky", priority = 1, new = function() error("cannot start") end,
                           access = function() end }]])
        f:close()
        local core = kit.core()
        local function config(extra)
            local policies = { { name = "route" }, { name = "breaker" }, extra }
            return assert(kit.config.normalize({ policy_path = dir .. "/?.lua", services = {
                demo = { upstreams = { "tcp://127.0.0.1:1", "tcp://127.0.0.1:2" }, policies = policies },
            } }, "spec.lua"))
        end
        local running = gateway.start(config(), core)
        local p = running.services.demo
        local route, breaker = p.instances[1].instance, p.instances[2].instance
        local ok, err = pcall(gateway.start, config("flaky"), core, running)
        os.execute("rm -rf " .. dir)
        assert.is_false(ok)
        assert.matches("cannot start", err)
        assert.equal(p.service, route.service)
        assert.equal(p.endpoints, route.endpoints)
        assert.equal(p.service, breaker.service)
        assert.equal(p.endpoints, breaker.eps)
    end)
end)

describe("Policy runtime: the hot path", function()
    it("allocates nothing per call through guard, ratelimit, route and breaker", function()
        local h = kit.service({ policies = {
            { name = "guard", allow = { "get_*" } }, { name = "ratelimit", rate = 1e9 },
            { name = "route" }, { name = "breaker" },
        } })
        local p = h.p
        local client = kit.client({ identity_key = "k:1" })
        local function run(n)
            for _ = 1, n do
                local v, ep = policy.request(p, 1, client, "get_user", 0, 5)
                assert(v == policy.CONTINUE)
                policy.response(p, 1, 0, nil, 0.001, ep, nil, 1, true)
            end
        end
        run(1000) -- warm up: buckets, decisions, traces
        collectgarbage()
        collectgarbage("stop")
        local before = collectgarbage("count")
        run(20000)
        local grown = collectgarbage("count") - before
        collectgarbage("restart")
        assert.is_true(grown < 64, ("grew by %.1f KiB over 20000 calls"):format(grown))
    end)
end)
