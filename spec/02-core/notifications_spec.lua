-- Notifications ([2, method, params], no answer): a client's notification to `service.method`
-- is forwarded to that service's upstream as `method`; one that cannot be delivered is dropped
-- and logged at warn. A notification an upstream sends to the gateway is not addressed to any
-- client: the gateway logs it at info level (event `upstream_notification`, with the service,
-- upstream and method) and carries on. See docs/protocol.md, Notifications.
local h = require "spec.support.helpers"

describe("Notifications", function()
    after_each(h.cleanup)

    it("from a client are forwarded to the service's upstream without the prefix", function()
        local d = h.setup_demo()
        assert(d.c:notify("demo.ping", { "pong", 42 }))
        -- a notification has no answer: poll the upstream until it has seen it
        local last = h.retry(function()
            local v = d.c:call("demo.last_notification", {})
            return type(v) == "table" and v, "no notification yet"
        end, h.timeout(3), 0.02)
        assert.same({ "ping", { "pong", 42 } }, last)
        local s = assert(h.upstream_stats(d.up))
        assert.equal(1, s.notifications)
        assert.equal(0, #d.c.notifications)
    end)

    it("from a client to an unknown service are dropped, logged at warn, and the connection stays", function()
        local d = h.setup_demo()
        assert(d.c:notify("nosuch.ping", { 1 }))
        assert(d.c:notify("noprefix", { 2 }))
        assert(d.c:notify("demo.ping", { 3 }))
        local last = h.retry(function()
            local v = d.c:call("demo.last_notification", {})
            return type(v) == "table" and v, "no notification yet"
        end, h.timeout(3), 0.02)
        assert.same({ "ping", { 3 } }, last)
        local s = assert(h.upstream_stats(d.up))
        assert.equal(1, s.notifications)
        assert.is_false(d.c.closed)
        assert.is_string(d.gw:wait_log("^%S+ warn .*nosuch", h.timeout(3)))
    end)

    it("from the upstream are logged by the gateway at info level; the call still returns", function()
        local d = h.setup_demo()
        local res, err = d.c:call("demo.notify", { "gg_upstream_event", 42 })
        assert.is_nil(err)
        assert.is_true(res)
        local line = d.gw:wait_log("^%S+ info upstream_notification .*gg_upstream_event", h.timeout(3))
        assert.is_string(line, "no info log line naming the upstream notification:\n" .. d.gw.proc:tail())
        -- the pooled upstream connection is still good
        assert.equal("after", d.c:call("demo.echo", { "after" }))
    end)
end)
