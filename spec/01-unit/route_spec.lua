-- route (policies/route.lua) in plain LuaJIT: which endpoint of a service takes each call.
-- The fake core reports endpoints connected (h:set_connected) as the gateway does.
local kit = require "spec.support.policy_kit"

local THREE = { "tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002", "tcp://127.0.0.1:7003" }

local function route(opts, extra)
    local spec = { name = "route" }
    for k, v in pairs(opts or {}) do spec[k] = v end
    local policies = { spec }
    for _, p in ipairs(extra or {}) do policies[#policies + 1] = p end
    return kit.service({ upstreams = THREE, policies = policies })
end

local function endpoints(h, n, method, args)
    local out = {}
    for i = 1, n do
        local r = h:request(method or "m", args and args[i] or {})
        assert.equal("continue", r.verdict)
        out[i] = r.endpoint
        h:response(r, "ok")
    end
    return out
end

local function counts(list)
    local c = { 0, 0, 0 }
    for _, e in ipairs(list) do c[e] = c[e] + 1 end
    return c
end

describe("route", function()
    it("round_robin: takes the endpoints in turn", function()
        assert.same({ 1, 2, 3, 1, 2, 3, 1 }, endpoints(route(), 7))
    end)

    it("skips endpoints with no live connection", function()
        local h = route()
        h:set_connected(2, 0)
        assert.same({ 1, 3, 1, 3 }, endpoints(h, 4))
        h:set_connected(2, 1)
        assert.same({ 1, 2, 3 }, endpoints(h, 3))
    end)

    it("skips endpoints whose breaker is open until the breaker's cooldown is over", function()
        local h = route({}, { { name = "breaker", failures = 1, cooldown = 2 } })
        local r = h:request("m")
        assert.equal(1, r.endpoint)
        h:response(r, "gateway_error", { code = 504 })
        assert.same({ 2, 3, 2, 3 }, endpoints(h, 4))
        h.core:advance(2) -- half-open: endpoint 1 may take its probe
        assert.same({ 1, 2, 3 }, endpoints(h, 3))
    end)

    it("when no endpoint has a live connection, still picks one whose breaker is not open", function()
        local h = route()
        for i = 1, 3 do h:set_connected(i, 0) end
        -- the core then sends the call on a connection being opened, or answers 502 at once
        assert.same({ 1, 2, 3 }, endpoints(h, 3))
    end)

    it("refuses with 530 circuit_open when breakers opened every endpoint", function()
        local h = route({}, { { name = "breaker", failures = 1, cooldown = 5 } })
        for _ = 1, 3 do
            local r = h:request("m")
            h:response(r, "gateway_error", { code = 502 })
        end
        local r = h:request("m")
        assert.same({ "reject", 530, "circuit open for every upstream of service 'demo'" },
            { r.verdict, r.code, r.message })
    end)

    it("weighted: spreads calls in proportion to the weights, smoothly; weight 0 takes none", function()
        local h = route({ strategy = "weighted", weights = { 3, 1, 0 } })
        local got = endpoints(h, 8)
        assert.same({ 6, 2, 0 }, counts(got))
        -- smooth: endpoint 2's calls are not next to each other
        for i = 2, #got do
            assert.is_false(got[i] == 2 and got[i - 1] == 2)
        end
        h:set_connected(1, 0)
        assert.same({ 0, 4, 0 }, counts(endpoints(h, 4)))
    end)

    it("least_outstanding: sends each call to the endpoint with the fewest calls in flight", function()
        local h = route({ strategy = "least_outstanding" })
        local a, b = h:request("slow"), h:request("slow")
        assert.are_not.equal(a.endpoint, b.endpoint)
        local idle = 6 - a.endpoint - b.endpoint
        for _ = 1, 5 do
            local r = h:request("fast")
            assert.equal(idle, r.endpoint)
            h:response(r, "ok")
        end
        h:response(a, "gateway_error", { code = 504 })
        local c = h:request("m")
        assert.are_not.equal(b.endpoint, c.endpoint)
        local inflight = {}
        for i = 1, 3 do inflight[i] = h.p.endpoints[i].inflight end
        local want = { 0, 0, 0 }
        want[b.endpoint], want[c.endpoint] = 1, 1
        assert.same(want, inflight)
    end)

    it("least_outstanding: a call refused after route chose its endpoint is not counted in flight", function()
        local h = route({ strategy = "least_outstanding" },
            { { name = "breaker", failures = 1, cooldown = 1, probes = 1 } })
        -- open endpoint 1's breaker, then let its cooldown pass: half-open, one probe
        local r = h:request("m")
        h:response(r, "gateway_error", { code = 504 })
        h.core:advance(1)
        local probe
        for _ = 1, 3 do
            local c = h:request("m")
            if c.endpoint == r.endpoint then probe = c end
        end
        assert.truthy(probe)
        -- more calls: route may pick endpoint 1 again, the breaker refuses them ("probing")
        for _ = 1, 6 do
            local c = h:request("m")
            if c.verdict == "continue" then h:response(c, "ok") end
        end
        h:response(probe, "ok")
        local inflight = 0
        for i = 1, 3 do inflight = inflight + h.p.endpoints[i].inflight end
        assert.equal(2, inflight) -- the two calls of the first loop that were not the probe
    end)

    it("hash: the same argument always goes to the same endpoint, and keys spread", function()
        local h = route({ strategy = "hash", arg = 2 })
        local args, seen = {}, {}
        for i = 1, 60 do args[i] = { "ignored", "user-" .. (i % 20) } end
        local got = endpoints(h, 60, "get", args)
        for i = 1, 60 do
            local k = args[i][2]
            if seen[k] then assert.equal(seen[k], got[i], k) else seen[k] = got[i] end
        end
        local c = counts(got)
        assert.is_true(c[1] > 0 and c[2] > 0 and c[3] > 0, table.concat(c, ","))
    end)

    it("hash: can hash a field of a table argument", function()
        local h = route({ strategy = "hash", arg = 1, field = "user" })
        local a = endpoints(h, 3, "get", { { { user = "u1", x = 1 } }, { { user = "u1", x = 2 } },
                                           { { user = "u1", x = 3 } } })
        assert.same({ a[1], a[1], a[1] }, a)
    end)

    it("hash: an endpoint going down moves only its own keys", function()
        local h = route({ strategy = "hash" })
        local args = {}
        for i = 1, 200 do args[i] = { "key" .. i } end
        local before = endpoints(h, 200, "get", args)
        h:set_connected(2, 0)
        local after = endpoints(h, 200, "get", args)
        for i = 1, 200 do
            if before[i] ~= 2 then
                assert.equal(before[i], after[i])
            else
                assert.are_not.equal(2, after[i])
            end
        end
    end)

    it("keeps working across a reload that changes the upstreams but not its options", function()
        local h = route({ strategy = "weighted", weights = { 1, 1, 1 } })
        endpoints(h, 3)
        local h2 = h:reload({ upstreams = { THREE[1] },
            policies = { { name = "route", strategy = "weighted", weights = { 1, 1, 1 } } } })
        assert.equal(h:instance("route"), h2:instance("route"))
        local r = h2:request("m")
        assert.same({ "continue", 1 }, { r.verdict, r.endpoint })
    end)

    it("refuses unknown strategies and bad weights at load time", function()
        local _, err = kit.validate({ name = "route", strategy = "fastest" })
        assert.matches("route.strategy: must be one of", err, 1, true)
        _, err = kit.validate({ name = "route", weights = { 1, -1 } })
        assert.equal("spec: route.weights[2]: must be at least 0", err)
    end)
end)
