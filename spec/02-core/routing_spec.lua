-- Routing: the part of the method before the first '.' names the service; the rest is what the
-- service's upstream receives (unless keep_prefix = true).
local h = require "spec.support.helpers"

describe("Routing", function()
    after_each(h.cleanup)

    it("answers 404 no_such_service for an unknown service and keeps the connection", function()
        local d = h.setup_demo()
        local res, err = d.c:call("nosuch.echo", { "x" })
        assert.is_nil(res)
        assert(h.is_error(err, 404, "no_such_service"))
        assert.is_string(err.message)
        res, err = d.c:call("demo.echo", { "after" })
        assert.is_nil(err)
        assert.equal("after", res)
    end)

    it("treats a method without a '.' as naming no service: 404 no_such_service", function()
        local d = h.setup_demo()
        local _, err = d.c:call("echo", { "x" })
        assert(h.is_error(err, 404, "no_such_service"))
        -- not even when a service has that name
        _, err = d.c:call("demo", { "x" })
        assert(h.is_error(err, 404, "no_such_service"))
        assert.is_false(d.c.closed)
    end)

    it("does not send calls for unknown services upstream", function()
        local d = h.setup_demo()
        for _ = 1, 5 do
            local _, err = d.c:call("other.echo", { 1 })
            assert(h.is_error(err, 404, "no_such_service"))
        end
        assert(d.c:call("demo.echo", { 1 }))
        local s = assert(h.await_upstream_calls(d.up, 1))
        assert.equal(1, s.calls - d.up.stats_calls)
    end)

    it("sends the full method upstream with keep_prefix = true", function()
        local d = h.setup_demo({ service = { keep_prefix = true } })
        local _, err = d.c:call("demo.echo", { "x" })
        assert.same({ code = 404, type = "no_such_method", message = "no such method 'demo.echo'" }, err)
    end)

    it("routes each service to its own upstream", function()
        local up1 = assert(h.start_upstream())
        local up2 = assert(h.start_upstream())
        local gw = assert(h.start_gateway({
            services = {
                one = { upstreams = { up1.addr }, deadline = 5 },
                two = { upstream = up2.addr, deadline = 5 },
            },
        }))
        local c = assert(h.client(gw.addr))
        for i = 1, 3 do
            assert.equal(i, c:call("one.echo", { i }))
        end
        assert.equal("b", c:call("two.echo", { "b" }))
        local s1 = assert(h.await_upstream_calls(up1, 3))
        local s2 = assert(h.await_upstream_calls(up2, 1))
        assert.equal(3, s1.calls - up1.stats_calls)
        assert.equal(1, s2.calls - up2.stats_calls)
        -- one service's upstream going away does not affect the other
        up2:kill("sigkill")
        up2:wait_exit()
        local _, err = c:call("two.echo", { "b" }, h.timeout(5))
        assert(h.is_error(err, 502, "upstream_unavailable"))
        assert.equal("a", c:call("one.echo", { "a" }))
    end)
end)
