-- Clients that go away: a client may close its connection with calls still in flight. The
-- gateway forgets those calls (late upstream answers are dropped), keeps serving everyone else,
-- and holds no memory or file descriptors for them afterwards.
local h = require "spec.support.helpers"

describe("A client disconnecting with calls in flight", function()
    after_each(h.cleanup)

    it("does not disturb the gateway or other clients", function()
        local d = h.setup_demo({ service = { deadline = 20 } })
        local leaver = assert(h.client(d.gw.addr))
        for i = 1, 10 do
            assert(leaver:request("demo.hang", {}))
            assert(leaver:request("demo.sleep", { 100, i }))
        end
        assert(h.await_upstream_calls(d.up, 20))
        leaver:close()
        local res, err = d.c:call("demo.echo", { "other" })
        assert.is_nil(err)
        assert.equal("other", res)
        -- answered after the leaver's sleep() answers reached the gateway
        res, err = d.c:call("demo.sleep", { 150, "later" })
        assert.is_nil(err)
        assert.equal("later", res)
        assert.equal(0, #d.c.duplicates)
        local fresh = assert(h.client(d.gw.addr))
        assert.equal("fresh", fresh:call("demo.echo", { "fresh" }))
    end)

    it("does not grow in memory or file descriptors across rounds of abandoned calls", function()
        local d = h.setup_demo({ service = { deadline = 1 } })
        local payload = string.rep("p", 4096)
        local sent = 0
        local function round()
            local conns = {}
            for i = 1, 10 do
                local cc = assert(h.client(d.gw.addr))
                for j = 1, 20 do
                    assert(cc:request("demo.hang", { payload }))
                    assert(cc:request("demo.sleep", { 20 + j, payload }))
                end
                conns[i] = cc
            end
            sent = sent + 10 * 40
            assert(h.await_upstream_calls(d.up, sent, h.timeout(20)))
            for _, cc in ipairs(conns) do
                cc:close()
            end
            assert.equal("sync", d.c:call("demo.echo", { "sync" }))
        end
        -- Settle: every abandoned call made so far has passed its deadline once this hang() has.
        local function settle()
            local _, err = d.c:call("demo.hang", {}, h.timeout(5))
            assert(h.is_error(err, 504, "deadline_exceeded"))
        end

        for _ = 1, 3 do
            round()
        end
        settle()
        local rss0 = assert(h.rss_kb(d.gw.pid))
        local fds0 = assert(h.fd_count(d.gw.pid))
        for _ = 1, 15 do
            round()
        end
        settle()
        -- closed connections are released (closing is asynchronous: await it)
        local fds = h.retry(function()
            local n = h.fd_count(d.gw.pid)
            return n and n <= fds0 + 2 and n, "fds " .. tostring(n) .. " > " .. fds0 .. " + 2"
        end, h.timeout(5), 0.05)
        assert(fds, "gateway keeps file descriptors of closed clients")
        local rss1 = assert(h.rss_kb(d.gw.pid))
        if not h.san then -- ASan's quarantine keeps freed memory: RSS says nothing there
            assert.is_true(rss1 - rss0 < 8 * 1024,
                string.format("RSS grew from %d to %d KiB over 15 rounds", rss0, rss1))
        end
        assert.equal("end", d.c:call("demo.echo", { "end" }))
    end)
end)
