-- fallback, end to end: answers for failed calls from the last good answer or a static value,
-- with the upstream dead or behind an open breaker.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"

local function setup(policies)
    local up = assert(h.start_upstream())
    local gw = e2e.gateway([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    services = {
        demo = { upstream = "%UP1%", deadline = 2, policies = { ]] .. policies .. [[ } },
    },
}]], { up = { up } })
    return up, gw, assert(h.client(gw.addr))
end

describe("fallback (end to end)", function()
    after_each(h.cleanup)

    it("answers with the last good answer to the same method and args when the upstream is gone", function()
        local up, _, c = setup([[fallback { ttl = 30 }]])
        assert.same({ n = 1, s = "x" }, c:call("demo.echo", { { n = 1, s = "x" } }))
        assert.equal(3, c:call("demo.add", { 1, 2 }))
        up:kill("sigkill")
        assert(up:wait_exit())
        assert.same({ n = 1, s = "x" }, c:call("demo.echo", { { n = 1, s = "x" } }))
        assert.equal(3, c:call("demo.add", { 1, 2 }))
        -- never answered before: nothing to fall back on
        local _, err = c:call("demo.add", { 2, 2 })
        assert(h.is_error(err, 502, "upstream_unavailable"))
        _, err = c:call("demo.echo", { { n = 2 } })
        assert(h.is_error(err, 502, "upstream_unavailable"))
    end)

    it("stops answering from a cached answer once its ttl has passed", function()
        local up, _, c = setup([[fallback { ttl = 0.3 }]])
        assert.equal("x", c:call("demo.echo", { "x" }))
        up:kill("sigkill")
        assert(up:wait_exit())
        assert.equal("x", c:call("demo.echo", { "x" }))
        local err = h.retry(function()
            local _, e = c:call("demo.echo", { "x" })
            return e
        end, h.timeout(3), 0.05)
        assert(h.is_error(err, 502, "upstream_unavailable"))
    end)

    it("answers calls an open breaker refuses with a static value, sending nothing", function()
        local up, _, c = setup([[fallback { value = { status = "unknown" }, size = 0 },
            breaker { failures = 1, cooldown = 30, count_errors = true }]])
        local _, err = c:call("demo.fail", { "down" })
        assert.same({ code = 1, type = "app_error", message = "down" }, err) -- upstream errors pass
        for _ = 1, 5 do
            assert.same({ status = "unknown" }, c:call("demo.echo", { 1 }))
        end
        assert.equal(1, e2e.seen(up))
    end)
end)
