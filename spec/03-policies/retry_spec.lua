-- retry, end to end: what the gateway sends again, counted by the upstream itself, and what
-- it does not (calls that reached the upstream and are not idempotent; past the deadline;
-- beyond the budget).
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"

local function gateway(services, ups)
    return e2e.gateway([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    -- retries and deadline answers are made in timer callbacks, and written at the loop's next
    -- wake-up: the sweeper of a short message_timeout wakes it every 50 ms
    limits = { message_timeout = 0.2 },
    services = { ]] .. services .. [[ },
}]], { up = ups })
end

describe("retry (end to end)", function()
    after_each(h.cleanup)

    it("retries a call that never reached the upstream, whatever its method, until it is back", function()
        local up = assert(h.start_upstream())
        local gw = gateway([[demo = { upstream = "%UP1%", deadline = 5, connections = 1,
            policies = { retry { attempts = 10, backoff = 0.05, max_backoff = 0.4 } } }]], { up })
        local c = assert(h.client(gw.addr))
        assert.equal(3, c:call("demo.add", { 1, 2 }))
        local port = up.port
        up:stop()
        assert(e2e.await_lines(gw, "upstream_lost service=demo", 1))
        local id = assert(c:request("demo.add", { 2, 3 }))
        assert(e2e.await_lines(gw, "retry service=demo attempt=2", 1))
        local up2 = assert(h.start_upstream({ listen = "tcp://127.0.0.1:" .. port }))
        local r = assert(c:wait_response(id, h.timeout(5)))
        assert.is_nil(r.error)
        assert.equal(5, r.result)
        -- `add` is not idempotent: it reached the new upstream exactly once
        assert.equal(1, e2e.seen(up2))
    end)

    it("does not retry a call that reached the upstream unless its method is idempotent", function()
        local up = assert(h.start_upstream())
        local gw = gateway([[
        plain = { upstream = "%UP1%", deadline = 5, connections = 4,
                  policies = { retry { attempts = 3, backoff = 0.01 } } },
        safe = { upstream = "%UP1%", deadline = 5, connections = 4, idempotent = { "drop" },
                 policies = { retry { attempts = 3, backoff = 0.01 } } },]], { up })
        assert(e2e.await_lines(gw, "upstream_connected", 8))
        local c = assert(h.client(gw.addr))
        -- drop: the upstream closes the connection on receiving it, after it got the call
        local _, err = c:call("plain.drop", {})
        assert(h.is_error(err, 502, "upstream_unavailable"))
        assert.equal(1, e2e.seen(up))
        _, err = c:call("safe.drop", {})
        assert(h.is_error(err, 502, "upstream_unavailable"))
        assert.equal(4, e2e.seen(up)) -- three attempts
        assert.equal(2, #e2e.lines(gw, "retry service=safe"))
        assert.equal(0, #e2e.lines(gw, "retry service=plain"))
    end)

    it("keeps retries within the budget: the reserve of 10, then `budget` per call", function()
        local port = h.unused_port()
        local gw = gateway(([[demo = { upstream = "tcp://127.0.0.1:%d", deadline = 5,
            policies = { retry { attempts = 2, budget = 0, backoff = 0 } } }]]):format(port))
        local c = assert(h.client(gw.addr))
        for _ = 1, 15 do
            local _, err = c:call("demo.echo", { 1 })
            assert(h.is_error(err, 502, "upstream_unavailable"))
        end
        assert.equal(10, #e2e.lines(gw, "retry service=demo attempt=2"))
    end)

    it("never retries past the call's deadline: the last failure is answered, not the deadline", function()
        local port = h.unused_port()
        local gw = gateway(([[demo = { upstream = "tcp://127.0.0.1:%d", deadline = 0.3,
            policies = { retry { attempts = 10, backoff = 0.2, max_backoff = 0.2 } } }]]):format(port))
        local c = assert(h.client(gw.addr))
        local t0 = h.now()
        local _, err = c:call("demo.echo", { 1 }, h.timeout(3))
        local took = h.now() - t0
        assert(h.is_error(err, 502, "upstream_unavailable"))
        assert.is_true(took < 0.3 + h.timeout(0.1), "answered after " .. took .. " s")
        assert.is_true(#e2e.lines(gw, "retry service=demo") >= 1)
    end)
end)
