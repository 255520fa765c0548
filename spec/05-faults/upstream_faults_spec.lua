-- Upstream faults under load: an upstream that dies (SIGKILL) or hangs (SIGSTOP, then SIGCONT)
-- while calls stream through the gateway. What must hold: every call sent is answered exactly
-- once, none later than its deadline + 1 s; the answers are the upstream's or the documented
-- gateway errors (502 when the connection dies, 504 at the deadline); the gateway serves again
-- once the upstream is back, without a restart.
local h = require "spec.support.helpers"
local load = require "spec.support.load"
local uv = require "luv"

-- A signal that does not count as "told to stop" (helpers' proc:kill would).
local function signal(pid, sig)
    return uv.kill(pid, sig)
end

-- Every error code in s.by_code must be one of `allowed`.
local function only_codes(s, allowed)
    for code, n in pairs(s.by_code) do
        local ok = false
        for _, a in ipairs(allowed) do
            ok = ok or code == a
        end
        if not ok then
            return nil, string.format("%d answers with error %s: %s", n, tostring(code), load.describe(s))
        end
    end
    return true
end

describe("Upstream faults under load", function()
    after_each(function()
        load.cleanup()
        h.cleanup()
    end)

    it("upstream SIGKILLed under load: every call sent is answered, none later than its deadline + 1 s",
    function()
        local deadline = 2
        local up = assert(h.start_upstream())
        local gw = assert(h.start_gateway(h.demo_config(up, { deadline = deadline })))
        local d = load.driver(gw.addr, {
            conns = 4, depth = 16, method = "demo.sleep", late_after = deadline + 1,
            params = function(n)
                return { 20, n }
            end,
        })
        d:run(0.5)
        assert.is_true(d.ok >= 50, "the load is not flowing: " .. load.describe(d:stats()))

        -- 64 calls are in flight in the upstream (20 ms each) when it dies
        assert(up:kill("sigkill"))
        assert(up:wait_exit(h.timeout(5)))
        d:run(0.5) -- calls made during the outage are answered at once (502), not at the deadline
        local during = d:stats()
        assert.is_true((during.by_code[502] or 0) > 0, "the outage was not felt: " .. load.describe(during))

        -- the same address comes back: the gateway reconnects (backoff) and calls succeed again
        local up2 = assert(h.start_upstream({ listen = up.addr }))
        local ok0 = d.ok
        assert(h.await(function()
            d:pump()
            return d.ok >= ok0 + 100
        end, h.timeout(10)), "no recovery after the upstream restarted: " .. load.describe(d:stats()))
        assert(d:drain(deadline + 2))

        local s = d:stats()
        load.note("%s", load.describe(s))
        assert.equal(0, s.unanswered, load.describe(s))
        assert.equal(0, s.late, "answers later than deadline + 1 s: " .. load.describe(s))
        assert.equal(0, s.duplicates + s.unknown, "answers twice or to unknown msgids: " .. load.describe(s))
        assert.equal(0, s.closed_conns, "the gateway closed a client connection: " .. load.describe(s))
        assert(only_codes(s, { 502 }))
        assert.equal(s.sent, s.answered)
        assert.is_true(s.max_latency < deadline + 1, load.describe(s))
        assert(h.await_upstream_calls(up2, 100))
    end)

    it("upstream SIGSTOPped (hung) then SIGCONTed: every call answered once, none later than deadline + 1 s; "
        .. "late upstream answers are dropped; calls succeed again after SIGCONT", function()
        local deadline = 1
        local up = assert(h.start_upstream())
        local gw = assert(h.start_gateway(h.demo_config(up, { deadline = deadline })))
        local d = load.driver(gw.addr, { conns = 4, depth = 8, late_after = deadline + 1 })
        d:run(0.3)
        assert.is_true(d.ok >= 50, "the load is not flowing: " .. load.describe(d:stats()))

        assert(signal(up.pid, "sigstop"))
        finally(function()
            signal(up.pid, "sigcont")
        end)
        local ok_before = d.ok
        d:run(deadline * 2 + 0.5) -- every call sent to the hung upstream ends at its deadline
        local hung = d:stats()
        assert.is_true((hung.by_code[504] or 0) >= 32, "calls did not time out: " .. load.describe(hung))
        assert.is_true(d.ok - ok_before <= 32, "answers from a stopped upstream? " .. load.describe(hung))

        assert(signal(up.pid, "sigcont"))
        -- the upstream answers its backlog (too late: dropped by the gateway) and new calls work
        local ok0 = d.ok
        assert(h.await(function()
            d:pump()
            return d.ok >= ok0 + 100
        end, h.timeout(10)), "no recovery after SIGCONT: " .. load.describe(d:stats()))
        assert(d:drain(deadline + 2))

        local s = d:stats()
        load.note("%s", load.describe(s))
        assert.equal(0, s.unanswered, load.describe(s))
        assert.equal(0, s.late, "answers later than deadline + 1 s: " .. load.describe(s))
        assert.equal(0, s.duplicates + s.unknown,
            "late upstream answers leaked through: " .. load.describe(s))
        assert.equal(0, s.closed_conns, load.describe(s))
        assert(only_codes(s, { 504 }))
        assert.equal(s.sent, s.answered)
        -- still in good health
        local c = assert(h.client(gw.addr))
        assert.equal("after", c:call("demo.echo", { "after" }))
    end)
end)
