-- ratelimit (policies/ratelimit.lua) in plain LuaJIT: token buckets on a fake clock.
local kit = require "spec.support.policy_kit"

local function ratelimit(opts)
    local spec = { name = "ratelimit" }
    for k, v in pairs(opts or {}) do spec[k] = v end
    return kit.service({ policies = { spec } })
end

local function take(h, n, method, client)
    local out = {}
    for i = 1, n do
        local r = h:request(method or "m", {}, client)
        out[i] = r.verdict == "continue" and "ok" or r.code
    end
    return out
end

local alice = kit.client({ identity = "alice", identity_key = "k:alice", host = "10.0.0.1" })
local bob = kit.client({ identity = "bob", identity_key = "k:bob", host = "10.0.0.1" })

describe("ratelimit", function()
    it("lets `burst` calls through at once, then refuses with 429 and a retry-after hint", function()
        local h = ratelimit({ rate = 2, burst = 3 })
        assert.same({ "ok", "ok", "ok", 429 }, take(h, 4, "m", alice))
        local r = h:request("m", {}, alice)
        assert.same({ "reject", 429, "rate limit of 2 calls/s exceeded for service 'demo'" },
            { r.verdict, r.code, r.message })
        assert.near(0.5, r.retry_after, 1e-9)
        h.core:advance(0.2)
        assert.near(0.3, h:request("m", {}, alice).retry_after, 1e-9)
    end)

    it("refills at `rate` tokens per second, up to the burst", function()
        local h = ratelimit({ rate = 10, burst = 2 })
        assert.same({ "ok", "ok", 429 }, take(h, 3, "m", alice))
        h.core:advance(0.1)
        assert.same({ "ok", 429 }, take(h, 2, "m", alice))
        h.core:advance(60)
        assert.same({ "ok", "ok", 429 }, take(h, 3, "m", alice))
    end)

    it("defaults the burst to the rate, and to at least one call", function()
        assert.same({ "ok", "ok", "ok", 429 }, take(ratelimit({ rate = 3 }), 4, "m", alice))
        assert.same({ "ok", 429 }, take(ratelimit({ rate = 0.5 }), 2, "m", alice))
    end)

    it("keeps one bucket per identity by default, per address for anonymous connections", function()
        local h = ratelimit({ rate = 1 })
        assert.same({ "ok", 429 }, take(h, 2, "m", alice))
        assert.same({ "ok", 429 }, take(h, 2, "m", bob))
        local anon1 = kit.client({ host = "10.0.0.7" })
        local anon2 = kit.client({ host = "10.0.0.8" })
        assert.same({ "ok", 429 }, take(h, 2, "m", anon1))
        assert.same({ "ok", 429 }, take(h, 2, "m", anon2))
    end)

    it("by = \"address\": identities behind one address share a bucket", function()
        local h = ratelimit({ rate = 1, by = "address" })
        assert.same({ "ok" }, take(h, 1, "m", alice))
        assert.same({ 429 }, take(h, 1, "m", bob))
    end)

    it("by = \"service\": one bucket for everyone", function()
        local h = ratelimit({ rate = 2, by = "service" })
        assert.same({ "ok", "ok", 429 }, { take(h, 1, "m", alice)[1], take(h, 1, "m", bob)[1],
                                           take(h, 1, "m", kit.client({ host = "10.9.9.9" }))[1] })
    end)

    it("per = \"method\": one bucket per method of each key", function()
        local h = ratelimit({ rate = 1, per = "method" })
        assert.same({ "ok", 429 }, take(h, 2, "get", alice))
        assert.same({ "ok", 429 }, take(h, 2, "put", alice))
        assert.same({ "ok", 429 }, take(h, 2, "get", bob))
    end)

    it("keeps at most max_keys buckets, per-method buckets included (forgetting means a refill)", function()
        local h = ratelimit({ rate = 1, per = "method", max_keys = 10 })
        local rl = h:instance("ratelimit")
        for i = 1, 100 do take(h, 1, "m" .. i, alice) end
        assert.is_true(rl.nkeys <= 10, "nkeys " .. rl.nkeys)
        local n = 0
        for _, b in pairs(rl.buckets) do
            n = n + 1
            for _ in pairs(b.methods or {}) do n = n + 1 end
        end
        assert.is_true(n <= 10, "buckets " .. n)
    end)

    it("runs before route and breaker, so a refused call takes no endpoint or probe", function()
        local h = kit.service({ policies = { { name = "breaker" }, { name = "route" },
                                             { name = "ratelimit", rate = 1 } } })
        assert.equal("ratelimit,route,breaker", kit.policy.names(h.p))
    end)

    it("keeps its buckets across a reload that leaves its options unchanged", function()
        local h = ratelimit({ rate = 1, burst = 2 })
        assert.same({ "ok", "ok" }, take(h, 2, "m", alice))
        local h2 = h:reload({ deadline = 7, policies = { { name = "ratelimit", rate = 1, burst = 2 } } })
        assert.same({ 429 }, take(h2, 1, "m", alice))
        local h3 = h2:reload({ policies = { { name = "ratelimit", rate = 1, burst = 3 } } })
        assert.same({ "ok", "ok", "ok", 429 }, take(h3, 4, "m", alice))
    end)

    it("refuses a missing rate and unknown keys at load time", function()
        local _, err = kit.validate({ name = "ratelimit", burst = 3 })
        assert.equal("spec: ratelimit.rate: is required", err)
        _, err = kit.validate({ name = "ratelimit", rate = 1, by = "user" })
        assert.equal('spec: ratelimit.by: must be one of identity, address, service, got string "user"',
            err)
    end)
end)
