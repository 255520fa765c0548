-- Upstream failures: every call gets exactly one answer. A dead or unreachable upstream means
-- 502 upstream_unavailable at once (not at the deadline); a slow one means 504
-- deadline_exceeded when the service's deadline passes; the pool reconnects by itself.
local h = require "spec.support.helpers"

describe("When the upstream fails", function()
    after_each(h.cleanup)

    it("answers calls in flight with 502 upstream_unavailable as soon as the upstream dies", function()
        local d = h.setup_demo({ service = { deadline = 20 } })
        local ids = {}
        for i = 1, 10 do
            ids[i] = assert(d.c:request("demo.hang", {}))
        end
        assert(h.await_upstream_calls(d.up, 10))
        d.up:kill("sigkill")
        assert(d.up:wait_exit())
        local t0 = h.now()
        local rs = assert(d.c:wait_all(ids, 3))
        assert.is_true(h.now() - t0 < 3)
        for _, r in ipairs(rs) do
            assert(h.is_error(r.error, 502, "upstream_unavailable"))
            assert.is_nil(r.result)
        end
        assert.equal(0, #d.c.duplicates)
        assert.is_false(d.c.closed)
    end)

    it("answers 502 upstream_unavailable promptly when nothing listens at the upstream address", function()
        local port = h.unused_port()
        local gw = assert(h.start_gateway(h.demo_config(nil, {
            upstreams = { "tcp://127.0.0.1:" .. port }, deadline = 20,
        })))
        local c = assert(h.client(gw.addr))
        local t0 = h.now()
        local _, err = c:call("demo.echo", { 1 }, 3)
        assert(h.is_error(err, 502, "upstream_unavailable"))
        assert.is_true(h.now() - t0 < 3)
    end)

    it("answers 502 upstream_unavailable when the upstream closes the connection mid-call", function()
        local d = h.setup_demo({ service = { deadline = 20 } })
        local _, err = d.c:call("demo.drop", {}, 3)
        assert(h.is_error(err, 502, "upstream_unavailable"))
        -- the pool replaces the connection
        local res = h.retry(function()
            return d.c:call("demo.echo", { "back" }, 2)
        end, h.timeout(10), 0.05)
        assert.equal("back", res)
    end)

    it("answers 504 deadline_exceeded when the upstream does not answer within the deadline", function()
        local d = h.setup_demo({ service = { deadline = 0.3 } })
        local t0 = h.now()
        local res, err = d.c:call("demo.hang", {}, 5)
        local elapsed = h.now() - t0
        assert.is_nil(res)
        assert(h.is_error(err, 504, "deadline_exceeded"))
        assert.is_true(elapsed >= 0.25, "answered after " .. elapsed .. " s, before the deadline")
        assert.is_true(elapsed < 2, "answered after " .. elapsed .. " s")
        res, err = d.c:call("demo.echo", { "ok" })
        assert.is_nil(err)
        assert.equal("ok", res)
    end)

    it("drops an upstream answer that arrives after the deadline", function()
        local up = assert(h.start_upstream())
        local gw = assert(h.start_gateway({
            services = {
                demo = { upstreams = { up.addr }, deadline = 0.3 },
                patient = { upstreams = { up.addr }, deadline = 10 },
            },
        }))
        local c = assert(h.client(gw.addr))
        local late = assert(c:request("demo.sleep", { 500, "late" }))
        local marker = assert(c:request("patient.sleep", { 800, "marker" }))
        local r = assert(c:wait_response(late, 5))
        assert(h.is_error(r.error, 504, "deadline_exceeded"))
        -- the marker is answered after the late answer reached the gateway
        r = assert(c:wait_response(marker, 5))
        assert.equal("marker", r.result)
        assert.equal(0, #c.duplicates)
        assert.same({ late, marker }, c.order)
    end)

    it("reconnects to an upstream restarted on the same port", function()
        local d = h.setup_demo({ service = { deadline = 2 } })
        assert.equal("before", d.c:call("demo.echo", { "before" }))
        local port = d.up.port
        assert.same({ 0, 0 }, { d.up:stop() })
        local _, err = d.c:call("demo.echo", { "down" }, 3)
        assert(h.is_error(err, 502, "upstream_unavailable"))

        local up2 = assert(h.start_upstream({ listen = "tcp://127.0.0.1:" .. port }))
        assert.equal(port, up2.port)
        local res = h.retry(function()
            return d.c:call("demo.echo", { "after" }, 2)
        end, h.timeout(10), 0.05)
        assert.equal("after", res)
        local s = assert(h.upstream_stats(up2))
        assert.is_true(s.accepted >= 1)
    end)
end)
