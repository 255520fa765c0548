-- Limits (config `limits`): max_clients bounds open client connections, max_inflight_per_client
-- is backpressure (the gateway stops reading a client while that many of its calls are in
-- flight, and resumes), max_calls bounds calls in flight in the whole gateway (503 overloaded),
-- idle_timeout closes connections with no traffic and no call in flight, message_timeout closes
-- connections that leave a message half sent.
local h = require "spec.support.helpers"

describe("Limits", function()
    after_each(h.cleanup)

    it("max_clients = 5: a 6th connection is closed while the first 5 keep working", function()
        local d = h.setup_demo({ config = { limits = { max_clients = 5 } } })
        local conns = { d.c }
        for i = 2, 5 do
            conns[i] = assert(h.client(d.gw.addr))
        end
        for i, c in ipairs(conns) do
            assert.equal(i, c:call("demo.echo", { i }))
        end

        local sixth, err = h.client(d.gw.addr)
        if sixth then -- the kernel completed the handshake; the gateway must close it
            local id = sixth:request("demo.echo", { 6 })
            assert(sixth:wait_closed(3), "the 6th connection was not closed")
            local r = id and sixth.responses[id]
            if r then
                assert.is_nil(r.result)
                assert(h.is_error(r.error, 503, "overloaded"))
            end
        else
            assert.matches("ECONNREFUSED", err)
        end

        for i, c in ipairs(conns) do
            assert.equal(i * 10, c:call("demo.echo", { i * 10 }))
        end
        -- a slot freed is a slot available again
        conns[5]:close()
        local res = h.retry(function()
            local c = h.client(d.gw.addr)
            if not c then
                return nil, "connect failed"
            end
            local v, e = c:call("demo.echo", { "new" }, 1)
            if not v then
                c:close()
            end
            return v, e
        end, h.timeout(5), 0.05)
        assert.equal("new", res)
    end)

    it("max_inflight_per_client = 4: 20 calls sent at once are all answered, at most 4 at a time", function()
        local d = h.setup_demo({ config = { limits = { max_inflight_per_client = 4 } } })
        local ids = {}
        local t0 = h.now()
        for i = 1, 20 do
            ids[i] = assert(d.c:request("demo.sleep", { 50, i }))
        end
        local rs = assert(d.c:wait_all(ids, h.timeout(10)))
        local elapsed = h.now() - t0
        for i = 1, 20 do
            assert.is_nil(rs[i].error)
            assert.equal(i, rs[i].result)
        end
        -- 20 calls of 50 ms, 4 at a time: at least 5 rounds
        assert.is_true(elapsed >= 0.2, "20 calls took " .. elapsed .. " s: more than 4 ran at once")
        -- and other clients are not held back
        local other = assert(h.client(d.gw.addr))
        assert.equal("free", other:call("demo.echo", { "free" }))
    end)

    it("max_inflight_per_client: a client over the limit does not slow down the others", function()
        local d = h.setup_demo({ config = { limits = { max_inflight_per_client = 2 } } })
        for i = 1, 50 do
            assert(d.c:request("demo.sleep", { 100, i }))
        end
        local other = assert(h.client(d.gw.addr))
        local t0 = h.now()
        assert.equal("quick", other:call("demo.echo", { "quick" }))
        assert.is_true(h.now() - t0 < 1)
    end)

    it("max_calls = 16: a call beyond 16 in flight in the gateway gets 503 overloaded", function()
        local d = h.setup_demo({ config = { limits = { max_calls = 16 } }, service = { deadline = 2 } })
        local other = assert(h.client(d.gw.addr))
        for i = 1, 16 do
            assert((i % 2 == 0 and d.c or other):request("demo.hang", {}))
        end
        assert(h.await_upstream_calls(d.up, 16))
        local t0 = h.now()
        local _, err = d.c:call("demo.echo", { "one too many" }, 3)
        assert(h.is_error(err, 503, "overloaded"))
        assert.is_true(h.now() - t0 < 1)
        _, err = other:call("demo.echo", { "one too many" }, 3)
        assert(h.is_error(err, 503, "overloaded"))
        -- the hung calls end at their deadline (504), which frees their slots
        local res = h.retry(function()
            return d.c:call("demo.echo", { "fits" }, 1)
        end, h.timeout(6), 0.05)
        assert.equal("fits", res)
        local hung = assert(other:wait_all({ 1, 2, 3, 4, 5, 6, 7, 8 }, 3))
        assert(h.is_error(hung[1].error, 504, "deadline_exceeded"))
    end)

    it("idle_timeout = 0.3: an idle connection is closed, one with a call in flight is not", function()
        local d = h.setup_demo({ config = { limits = { idle_timeout = 0.3 } } })
        local t0 = h.now()
        local idle = assert(h.client(d.gw.addr))
        local busy = d.c
        local id = assert(busy:request("demo.sleep", { 1200, "done" }))
        assert(idle:wait_closed(3), "idle connection not closed")
        local idle_for = idle.close_time - t0
        assert.is_true(idle_for >= 0.25, "closed after " .. idle_for .. " s")
        assert.is_false(busy.closed, "closed a connection with a call in flight")
        local r = assert(busy:wait_response(id, h.timeout(5)))
        assert.equal("done", r.result)
        -- once answered, the busy connection is idle too
        assert(busy:wait_closed(3))
        assert.is_true(busy.close_time - r.time >= 0.25)
    end)

    it("idle_timeout: traffic keeps a connection open", function()
        local d = h.setup_demo({ config = { limits = { idle_timeout = 0.3 } } })
        local t0 = h.now()
        while h.now() - t0 < 1 do
            assert.equal("ping", d.c:call("demo.echo", { "ping" }))
            h.pause(0.1)
        end
        assert.is_false(d.c.closed)
    end)

    it("message_timeout = 0.3: a connection that leaves a message half sent is closed", function()
        local d = h.setup_demo({ config = { limits = { message_timeout = 0.3 } } })
        local bytes = h.mp.encode({ 0, 1, "demo.echo", { string.rep("x", 100) } })
        local t0 = h.now()
        assert(d.c:send_raw(bytes:sub(1, 50)))
        assert(d.c:wait_closed(3), "half-sent message did not time out")
        assert.is_true(d.c.close_time - t0 >= 0.25)
        local c = assert(h.client(d.gw.addr))
        assert.equal("ok", c:call("demo.echo", { "ok" }))
    end)
end)
