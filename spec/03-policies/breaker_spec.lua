-- breaker, end to end, against a real ghost-upstream that fails on command (fail), hangs
-- (SIGSTOP) or dies (SIGKILL). Counts come from the upstream's stats(): they show that nothing
-- reaches it while the breaker is open, that exactly the probes do when it is half-open, and
-- that recovery closes it.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"

local function setup(breaker, deadline)
    local up = assert(h.start_upstream())
    local gw = e2e.gateway(([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    -- answers made in timer callbacks (deadlines) are written at the loop's next wake-up: the
    -- sweeper of a short message_timeout wakes it every 50 ms
    limits = { message_timeout = 0.2 },
    services = {
        demo = { upstream = "%%UP1%%", deadline = %s, policies = { breaker %s } },
    },
}]]):format(deadline or 2, breaker), { up = { up } })
    return up, gw, assert(h.client(gw.addr))
end

-- Wait for the cooldown by trying calls: refused ones (530) never reach the upstream; the first
-- call let through is a probe. Returns the msgid of that call, still in flight, or its answer.
local function first_probe(c, method, params, in_flight)
    return assert(h.retry(function()
        local id = assert(c:request(method, params))
        local r = c:wait_response(id, in_flight and 0.1 or 2)
        if r and type(r.error) == "table" and r.error.code == 530 then return nil, "still open" end
        if in_flight then
            assert.is_nil(r, "the probe should still be in flight")
            return id
        end
        return r
    end, h.timeout(5), 0.02))
end

describe("breaker (end to end)", function()
    after_each(h.cleanup)

    it("opens, sends nothing while open, lets one probe through half-open, and recovery closes it", function()
        local up, _, c = setup([[{ failures = 3, cooldown = 0.3, max_cooldown = 2, count_errors = true }]])
        -- closed: three failures reach the upstream and open the breaker
        for _ = 1, 3 do
            local _, err = c:call("demo.fail", { "boom" })
            assert.same({ code = 1, type = "app_error", message = "boom" }, err)
        end
        assert.equal(3, e2e.seen(up))

        -- open: calls fail fast with circuit_open and a retry-after; nothing is sent
        local t0 = h.now()
        for i = 1, 10 do
            local _, err = c:call("demo.echo", { i })
            assert(h.is_error(err, 530, "circuit_open"))
            assert.is_true(err.retry_after > 0 and err.retry_after <= 0.3 + 1e-6, tostring(err.retry_after))
        end
        assert.is_true(h.now() - t0 < h.timeout(0.3), "refusals are immediate")
        assert.equal(3, e2e.seen(up))

        -- half-open: the probe fails, the breaker opens again for twice the cooldown
        local r = first_probe(c, "demo.fail", { "probe" })
        assert.same({ code = 1, type = "app_error", message = "probe" }, r.error)
        assert.equal(4, e2e.seen(up))
        local _, err = c:call("demo.echo", { 0 })
        assert(h.is_error(err, 530, "circuit_open"))
        assert.is_true(err.retry_after > 0.45 and err.retry_after <= 0.6 + 1e-6, tostring(err.retry_after))

        -- half-open again: one probe in flight, the other calls are refused and not sent
        local probe = first_probe(c, "demo.sleep", { 300, "probe" }, true)
        for i = 1, 5 do
            _, err = c:call("demo.echo", { i })
            assert(h.is_error(err, 530, "circuit_open"))
            assert.matches("probing", err.message)
        end
        r = assert(c:wait_response(probe, h.timeout(3)))
        assert.equal("probe", r.result)
        assert.equal(5, e2e.seen(up))

        -- the probe's success closed it
        for i = 1, 3 do assert.equal(i, c:call("demo.echo", { i })) end
        assert.equal(8, e2e.seen(up))
    end)

    it("counts timeouts: an upstream that hangs (SIGSTOP) opens it, then calls fail fast", function()
        local up, _, c = setup([[{ failures = 2, cooldown = 0.3 }]], 0.2)
        up:kill("sigstop")
        local ids = { assert(c:request("demo.echo", { 1 })), assert(c:request("demo.echo", { 2 })) }
        for _, r in ipairs(assert(c:wait_all(ids, h.timeout(3)))) do
            assert(h.is_error(r.error, 504, "deadline_exceeded"))
        end
        local t0 = h.now()
        local _, err = c:call("demo.echo", { 3 })
        assert(h.is_error(err, 530, "circuit_open"))
        assert.is_true(h.now() - t0 < h.timeout(0.15), "refused without waiting for the deadline")
        up:kill("sigcont")
        local r = first_probe(c, "demo.echo", { "back" })
        assert.equal("back", r.result)
        assert.equal("ok", c:call("demo.echo", { "ok" }))
        -- the two calls that timed out reached the upstream (late); the refused one did not
        assert.equal(4, e2e.seen(up))
    end)

    it("counts connection failures: a dead upstream opens it", function()
        local up, _, c = setup([[{ failures = 3, cooldown = 5 }]])
        up:kill("sigkill")
        up:wait_exit()
        for _ = 1, 3 do
            local _, err = c:call("demo.echo", { 1 })
            assert(h.is_error(err, 502, "upstream_unavailable"))
        end
        local _, err = c:call("demo.echo", { 1 })
        assert(h.is_error(err, 530, "circuit_open"))
        assert.is_true(err.retry_after > 4 and err.retry_after <= 5 + 1e-6)
    end)

    it("does not count errors the upstream returns unless count_errors is set", function()
        local up, _, c = setup([[{ failures = 2, cooldown = 5 }]])
        for _ = 1, 6 do
            local _, err = c:call("demo.fail", { "app" })
            assert.equal("app_error", err.type)
        end
        assert.equal("still closed", c:call("demo.echo", { "still closed" }))
        assert.equal(7, e2e.seen(up))
    end)
end)
