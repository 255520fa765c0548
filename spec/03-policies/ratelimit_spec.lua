-- ratelimit, end to end: token buckets in the gateway; refused calls never reach the upstream.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"

local KEY_A = "key-a-0123456789abcdef"
local KEY_B = "key-b-0123456789abcdef"

local function setup(ratelimit)
    local up = assert(h.start_upstream())
    local gw = e2e.gateway(([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    auth = { keys = { [%q] = { identity = "a" }, [%q] = { identity = "b" } } },
    services = {
        demo = { upstream = "%%UP1%%", deadline = 2, policies = { ratelimit %s } },
    },
}]]):format(KEY_A, KEY_B, ratelimit), { up = { up } })
    return up, gw
end

describe("ratelimit (end to end)", function()
    after_each(h.cleanup)

    it("lets the burst through, then answers 429 rate_limited with a retry-after hint", function()
        local up, gw = setup([[{ rate = 5, burst = 3 }]])
        local c = assert(h.client(gw.addr))
        assert.same({ "ok", "ok", "ok", 429 }, e2e.codes(e2e.call_n(c, 4, "demo.echo", { 1 })))
        local _, err = c:call("demo.echo", { 1 })
        assert(h.is_error(err, 429, "rate_limited"))
        assert.equal("rate limit of 5 calls/s exceeded for service 'demo'", err.message)
        assert.is_true(err.retry_after > 0 and err.retry_after <= 0.2 + 1e-6, tostring(err.retry_after))
        assert.equal(3, e2e.seen(up))
        -- a token comes back
        assert.equal(1, h.retry(function() return c:call("demo.echo", { 1 }) end, h.timeout(2), 0.05))
        assert.equal(4, e2e.seen(up))
    end)

    it("keeps one bucket per authenticated identity", function()
        local _, gw = setup([[{ rate = 0.01, burst = 2 }]])
        local a1, a2, b = assert(h.client(gw.addr)), assert(h.client(gw.addr)), assert(h.client(gw.addr))
        assert.same({ identity = "a" }, a1:call("ghost.auth", { KEY_A }))
        assert.same({ identity = "a" }, a2:call("ghost.auth", { KEY_A }))
        assert.same({ identity = "b" }, b:call("ghost.auth", { KEY_B }))
        -- two connections of identity a share its bucket
        assert.same({ "ok", "ok" }, e2e.codes(e2e.call_n(a1, 2, "demo.echo", { 1 })))
        assert.same({ 429 }, e2e.codes(e2e.call_n(a2, 1, "demo.echo", { 1 })))
        assert.same({ "ok", "ok", 429 }, e2e.codes(e2e.call_n(b, 3, "demo.echo", { 1 })))
    end)

    it("per = \"method\" keeps a bucket per method", function()
        local up, gw = setup([[{ rate = 0.01, burst = 1, per = "method", by = "service" }]])
        local c = assert(h.client(gw.addr))
        assert.same({ "ok", 429 }, e2e.codes(e2e.call_n(c, 2, "demo.echo", { 1 })))
        assert.same({ "ok", 429 }, e2e.codes(e2e.call_n(c, 2, "demo.add", { 1, 2 })))
        assert.equal(2, e2e.seen(up))
    end)
end)
