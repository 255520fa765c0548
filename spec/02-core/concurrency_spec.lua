-- Concurrency: one connection carries many calls at once (pipelining), answers come back in
-- the order the upstream produces them, and many connections are served side by side.
local h = require "spec.support.helpers"

describe("Concurrent calls", function()
    local gw, c

    before_each(function()
        local d = h.setup_demo()
        gw, c = d.gw, d.c
    end)

    after_each(h.cleanup)

    it("answers 1,000 requests pipelined on one connection, each with its own msgid", function()
        local ids = {}
        for i = 1, 1000 do
            ids[i] = assert(c:request("demo.echo", { "v" .. i }))
        end
        local rs = assert(c:wait_all(ids, h.timeout(20)))
        for i = 1, 1000 do
            assert.equal(ids[i], rs[i].id)
            assert.is_nil(rs[i].error)
            assert.equal("v" .. i, rs[i].result)
        end
        assert.equal(1000, #c.order)
        assert.equal(0, #c.duplicates)
    end)

    it("returns answers in the order the upstream sends them, not the order of the requests", function()
        local slow = assert(c:request("demo.sleep", { 200, "slow" }))
        local medium = assert(c:request("demo.sleep", { 10, "medium" }))
        local fast = assert(c:request("demo.echo", { "fast" }))
        local rs = assert(c:wait_all({ slow, medium, fast }))
        assert.same({ fast, medium, slow }, c.order)
        assert.equal("slow", rs[1].result)
        assert.equal("medium", rs[2].result)
        assert.equal("fast", rs[3].result)
    end)

    it("does not make a fast call wait behind a slow one", function()
        local t0 = h.now()
        local slow = assert(c:request("demo.sleep", { 1000, "slow" }))
        local res, err = c:call("demo.echo", { "fast" })
        assert.is_nil(err)
        assert.equal("fast", res)
        assert.is_true(h.now() - t0 < 0.9, "the fast call waited for the slow one")
        assert.is_nil(c.responses[slow])
        assert(c:wait_response(slow, h.timeout(5)))
    end)

    it("serves 200 client connections calling at the same time", function()
        local conns = {}
        for i = 1, 200 do
            conns[i] = assert(h.client(gw.addr))
        end
        local ids = {}
        for i, cc in ipairs(conns) do
            ids[i] = assert(cc:request("demo.sleep", { 20, i }))
        end
        for i, cc in ipairs(conns) do
            local r = assert(cc:wait_response(ids[i], h.timeout(10)))
            assert.is_nil(r.error)
            assert.equal(i, r.result)
        end
    end)

    it("keeps the calls of 50 connections x 20 pipelined calls apart", function()
        local conns, ids = {}, {}
        for i = 1, 50 do
            conns[i] = assert(h.client(gw.addr))
            ids[i] = {}
            for j = 1, 20 do
                local method = (j % 3 == 0) and "demo.sleep" or "demo.echo"
                local params = (j % 3 == 0) and { j, i * 1000 + j } or { i * 1000 + j }
                ids[i][j] = assert(conns[i]:request(method, params))
            end
        end
        for i, cc in ipairs(conns) do
            local rs = assert(cc:wait_all(ids[i], h.timeout(10)))
            for j = 1, 20 do
                assert.equal(i * 1000 + j, rs[j].result)
            end
            assert.equal(0, #cc.duplicates)
        end
    end)
end)
