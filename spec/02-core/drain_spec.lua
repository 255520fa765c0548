-- Graceful shutdown: on SIGTERM (or SIGINT) the gateway stops accepting connections, answers
-- new calls with 531 shutting_down, lets the calls in flight finish and passes their answers on,
-- then exits 0. drain_timeout bounds the wait: calls still in flight then get 531 too.
local h = require "spec.support.helpers"

-- Try to connect until the connection is refused (ECONNREFUSED: nothing listens any more).
-- A connection accepted and then closed or reset while the listener is being closed is a
-- "not yet". Returns the error, or nil, err.
local function await_refused(addr, timeout)
    return h.retry(function()
        local c, err = h.client(addr, { timeout = 1 })
        if c then
            c:close()
            return nil, "still accepting"
        end
        if not err:find("ECONNREFUSED", 1, true) then
            return nil, err
        end
        return err
    end, timeout, 0.01)
end

describe("Graceful drain", function()
    after_each(h.cleanup)

    it("on SIGTERM answers every call in flight, turns new ones away, and exits 0", function()
        local d = h.setup_demo({ config = { drain_timeout = 10 } })
        local c2 = assert(h.client(d.gw.addr))
        local ids1, ids2 = {}, {}
        for i = 1, 5 do
            ids1[i] = assert(d.c:request("demo.sleep", { 1000, "a" .. i }))
            ids2[i] = assert(c2:request("demo.sleep", { 1000, "b" .. i }))
        end
        assert(h.await_upstream_calls(d.up, 10))
        assert(d.gw:kill("sigterm"))

        local err = await_refused(d.gw.addr, 0.8)
        assert.is_string(err, "a new connection was accepted after SIGTERM")
        assert.matches("ECONNREFUSED", err)
        assert.is_false(d.gw.proc.exited, "exited before the calls in flight were answered")
        assert.same({}, d.c.order)
        -- a new call on an open connection is turned away
        local late, lerr = c2:call("demo.echo", { "too late" }, 0.5)
        assert.is_nil(late)
        assert(h.is_error(lerr, 531, "shutting_down"))

        local rs1 = assert(d.c:wait_all(ids1, h.timeout(5)))
        local rs2 = assert(c2:wait_all(ids2, h.timeout(5)))
        for i = 1, 5 do
            assert.is_nil(rs1[i].error)
            assert.equal("a" .. i, rs1[i].result)
            assert.is_nil(rs2[i].error)
            assert.equal("b" .. i, rs2[i].result)
        end
        local code, sig = d.gw:wait_exit(h.timeout(5))
        assert.equal(0, code, d.gw.proc:tail())
        assert.equal(0, sig)
    end)

    it("exits 0 at once on SIGTERM when nothing is in flight", function()
        local d = h.setup_demo({ config = { drain_timeout = 10 } })
        assert.equal("x", d.c:call("demo.echo", { "x" }))
        local t0 = h.now()
        assert(d.gw:kill("sigterm"))
        local code, sig = d.gw:wait_exit(h.timeout(3))
        assert.equal(0, code, d.gw.proc:tail())
        assert.equal(0, sig)
        assert.is_true(h.now() - t0 < 2)
        assert(d.c:wait_closed(1))
    end)

    it("drains on SIGINT too", function()
        local d = h.setup_demo({ config = { drain_timeout = 10 } })
        local id = assert(d.c:request("demo.sleep", { 300, "done" }))
        assert(h.await_upstream_calls(d.up, 1))
        assert(d.gw:kill("sigint"))
        local r = assert(d.c:wait_response(id, h.timeout(5)))
        assert.equal("done", r.result)
        assert.equal(0, (d.gw:wait_exit(h.timeout(5))))
    end)

    it("gives up after drain_timeout: 531 shutting_down to what is left, exit 0", function()
        local d = h.setup_demo({ config = { drain_timeout = 0.5 }, service = { deadline = 30 } })
        local id = assert(d.c:request("demo.hang", {}))
        assert(h.await_upstream_calls(d.up, 1))
        local t0 = h.now()
        assert(d.gw:kill("sigterm"))
        local code = d.gw:wait_exit(h.timeout(5))
        local elapsed = h.now() - t0
        assert.equal(0, code, d.gw.proc:tail())
        assert.is_true(elapsed >= 0.4, "exited after " .. elapsed .. " s, before drain_timeout")
        assert.is_true(elapsed < 3, "exited after " .. elapsed .. " s")
        -- the call still in flight was answered before the gateway went away
        local r = assert(d.c:wait_response(id, 1))
        assert(h.is_error(r.error, 531, "shutting_down"))
        assert(d.c:wait_closed(1))
    end)
end)
