-- breaker (policies/breaker.lua) in plain LuaJIT: per-endpoint circuit breakers, driven by the
-- outcomes the response phase reports, on a fake clock.
local kit = require "spec.support.policy_kit"

local ONE = { "tcp://127.0.0.1:7001" }

local function breaker(opts, upstreams)
    local spec = { name = "breaker" }
    for k, v in pairs(opts or {}) do spec[k] = v end
    return kit.service({ upstreams = upstreams or ONE, policies = { spec } })
end

-- One call through the pipeline ending with `kind` (and code), on the endpoint the breaker chose.
local function call(h, kind, code)
    local r, resp = h:call("m", {}, kind, { code = code })
    return r, resp
end

local function fail(h, n, code)
    for _ = 1, n do
        local r = call(h, "gateway_error", code or 504)
        assert.equal("continue", r.verdict)
    end
end

describe("breaker", function()
    describe("a peer's message (remote)", function()
        it("opens for the peer's cooldown, capped at max_cooldown, and says whether it knows the endpoint",
            function()
                local h = breaker({ cooldown = 1, max_cooldown = 30 })
                local b = h:instance("breaker")
                assert.is_false(b:remote("tcp://127.0.0.1:9", "open", 5))
                assert.is_true(b:remote(ONE[1], "open", 5))
                assert.near(5, h:request("m").retry_after, 1e-9)
                assert.is_true(b:remote(ONE[1], "open", 3)) -- shorter: changes nothing
                assert.near(5, h:request("m").retry_after, 1e-9)
                b:remote(ONE[1], "open", 3600)
                assert.near(30, h:request("m").retry_after, 1e-9)
            end)

        it("a peer's cooldown of 0 makes one probe, and a failed probe waits at least our own cooldown",
            function()
                local h = breaker({ cooldown = 2 })
                local b = h:instance("breaker")
                b:remote(ONE[1], "open", 0)
                fail(h, 1) -- the probe
                local r = h:request("m")
                assert.equal(530, r.code)
                assert.near(4, r.retry_after, 1e-9)
            end)

        it("closed ends a wait a peer imposed, so the next call probes; it never closes one of ours",
            function()
                local h = breaker({ failures = 1, cooldown = 5 })
                local b = h:instance("breaker")
                b:remote(ONE[1], "open", 5)
                b:remote(ONE[1], "closed", 0)
                call(h, "ok") -- the probe
                assert.equal("closed", b:states()[1].state)
                fail(h, 1) -- opened here
                b:remote(ONE[1], "closed", 0)
                assert.equal(530, h:request("m").code)
            end)

        it("is ignored with share = false", function()
            local h = breaker({ share = false })
            assert.is_false(h:instance("breaker"):remote(ONE[1], "open", 5))
            assert.equal("continue", h:request("m").verdict)
        end)
    end)

    it("opens after `failures` consecutive timeouts or connection failures", function()
        local h = breaker({ failures = 3, cooldown = 5 })
        fail(h, 2, 504)
        fail(h, 1, 502)
        local r = h:request("m")
        assert.same({ "reject", 530, "circuit open for upstream tcp://127.0.0.1:7001 of service 'demo'" },
            { r.verdict, r.code, r.message })
        assert.near(5, r.retry_after, 1e-9)
        h.core:advance(2)
        assert.near(3, h:request("m").retry_after, 1e-9)
        assert.equal("open", h:instance("breaker"):states()[1].state)
    end)

    it("counts only consecutive failures: a success starts again", function()
        local h = breaker({ failures = 3 })
        fail(h, 2)
        call(h, "ok")
        fail(h, 2)
        assert.equal("continue", h:request("m").verdict)
    end)

    it("does not count errors the upstream returns unless count_errors is set", function()
        local h = breaker({ failures = 2 })
        for _ = 1, 5 do call(h, "upstream_error") end
        assert.equal("continue", h:request("m").verdict)
        h = breaker({ failures = 2, count_errors = true })
        for _ = 1, 2 do call(h, "upstream_error") end
        assert.equal(530, h:request("m").code)
    end)

    it("does not count other gateway errors (overloaded) as failures of the upstream", function()
        local h = breaker({ failures = 2 })
        for _ = 1, 5 do call(h, "gateway_error", 503) end
        assert.equal("continue", h:request("m").verdict)
    end)

    it("opens on a failure ratio over the sliding window once the minimum volume is reached", function()
        local h = breaker({ failures = 100, ratio = 0.5, window = 10, min_calls = 10 })
        -- 9 calls, 5 failed: over the ratio but under the volume
        for i = 1, 9 do call(h, i % 2 == 1 and "gateway_error" or "ok", 504) end
        assert.equal("continue", h:request("m").verdict)
        call(h, "gateway_error", 504) -- 10 calls, 6 failed
        assert.equal(530, h:request("m").code)
    end)

    it("forgets failures that slid out of the window", function()
        local h = breaker({ failures = 100, ratio = 0.5, window = 5, min_calls = 4 })
        call(h, "gateway_error", 504)
        call(h, "gateway_error", 504)
        h.core:advance(6) -- both failures are out of the window now
        call(h, "ok")
        call(h, "ok")
        call(h, "ok")
        call(h, "gateway_error", 504) -- 1 of 4
        assert.equal("continue", h:request("m").verdict)
    end)

    it("after the cooldown lets `probes` calls through (half-open) and refuses the others", function()
        local h = breaker({ failures = 1, cooldown = 1, probes = 2 })
        fail(h, 1)
        h.core:advance(1)
        local p1, p2 = h:request("m"), h:request("m")
        assert.same({ "continue", "continue" }, { p1.verdict, p2.verdict })
        local r = h:request("m")
        assert.same({ "reject", 530,
                      "circuit half-open for upstream tcp://127.0.0.1:7001 of service 'demo': probing" },
            { r.verdict, r.code, r.message })
        assert.equal("half_open", h:instance("breaker"):states()[1].state)
        -- a probe's success closes it
        h:response(p1, "ok")
        assert.equal("closed", h:instance("breaker"):states()[1].state)
        h:response(p2, "ok")
        assert.equal("continue", h:request("m").verdict)
    end)

    it("re-opens on a failed probe for twice the cooldown, up to max_cooldown; closing resets it", function()
        local h = breaker({ failures = 1, cooldown = 1, max_cooldown = 3 })
        fail(h, 1)
        local expect = { 2, 3, 3 }
        for _, cooldown in ipairs(expect) do
            h.core:advance(h:instance("breaker"):states()[1].cooldown)
            local probe = h:request("m")
            assert.equal("continue", probe.verdict)
            h:response(probe, "gateway_error", { code = 504 })
            local r = h:request("m")
            assert.equal(530, r.code)
            assert.near(cooldown, r.retry_after, 1e-9)
        end
        h.core:advance(3)
        call(h, "ok")
        assert.equal("closed", h:instance("breaker"):states()[1].state)
        fail(h, 1)
        assert.near(1, h:request("m").retry_after, 1e-9)
    end)

    it("ignores late answers of calls that were not probes while half-open", function()
        local h = breaker({ failures = 2, cooldown = 1 })
        local slow = h:request("m") -- in flight while the breaker opens
        fail(h, 2)
        h.core:advance(1)
        local probe = h:request("m")
        h:response(slow, "ok")
        assert.equal("half_open", h:instance("breaker"):states()[1].state)
        h:response(probe, "ok")
        assert.equal("closed", h:instance("breaker"):states()[1].state)
    end)

    it("gets its probe back when a later policy refuses the call", function()
        local dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -p " .. dir))
        local f = assert(io.open(dir .. "/refuse.lua", "w"))
        f:write([[return { name = "refuse", priority = 1, new = function() return { on = false } end,
            access = function(self, ctx) if self.on then ctx:reject("rate_limited", "later") end end }]])
        f:close()
        local h = kit.service({ upstreams = ONE,
                                policies = { { name = "breaker", failures = 1, cooldown = 1 }, "refuse" } },
            { top = { policy_path = dir .. "/?.lua" } })
        os.execute("rm -rf " .. dir)
        fail(h, 1)
        h.core:advance(1)
        h:instance("refuse").on = true
        assert.equal(429, h:request("m").code) -- took the probe, then refused
        h:instance("refuse").on = false
        local probe = h:request("m")
        assert.equal("continue", probe.verdict)
        h:response(probe, "ok")
        assert.equal("closed", h:instance("breaker"):states()[1].state)
    end)

    it("keeps one breaker per endpoint and sends calls to the endpoints whose breaker is closed", function()
        local h = breaker({ failures = 1, cooldown = 10 }, { "tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002" })
        local r = h:request("m")
        h:response(r, "gateway_error", { code = 502 })
        local bad = r.endpoint
        for _ = 1, 6 do
            local c = h:request("m")
            assert.equal("continue", c.verdict)
            assert.are_not.equal(bad, c.endpoint)
            h:response(c, "ok")
        end
        local states = h:instance("breaker"):states()
        assert.equal("open", states[bad].state)
        assert.equal("closed", states[3 - bad].state)
        -- the route policy reads these
        assert.is_true(h.p.endpoints[bad].open)
        assert.equal(h.core.clock + 10, h.p.endpoints[bad].retry_at)
    end)

    it("keeps its state across a reload that leaves its options unchanged, by upstream address", function()
        local two = { "tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002" }
        local h = kit.service({ upstreams = two,
                                policies = { { name = "breaker", failures = 1, cooldown = 10 } } })
        local r = h:request("m")
        h:response(r, "gateway_error", { code = 504 })
        local addr = two[r.endpoint]
        local h2 = h:reload({ upstreams = { two[2], two[1] }, deadline = 3,
                              policies = { { name = "breaker", failures = 1, cooldown = 10 } } })
        local i = addr == two[1] and 2 or 1
        assert.equal("open", h2:instance("breaker"):states()[i].state)
        assert.is_true(h2.p.endpoints[i].open)
        assert.equal(h.core.clock + 10, h2.p.endpoints[i].retry_at)
        -- changed options: a new breaker
        local h3 = h2:reload({ upstreams = two,
                               policies = { { name = "breaker", failures = 2, cooldown = 10 } } })
        assert.same({ "closed", "closed" }, { h3:instance("breaker"):states()[1].state,
                                              h3:instance("breaker"):states()[2].state })
    end)
end)
