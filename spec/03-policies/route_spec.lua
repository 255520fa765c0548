-- route, end to end: three ghost-upstream processes behind one service. Where calls went is
-- counted by the upstreams themselves (stats()).
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"
local kit = require "spec.support.policy_kit"

local function setup(route, extra)
    local ups = {}
    for i = 1, 3 do ups[i] = assert(h.start_upstream()) end
    local gw = e2e.gateway([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    -- answers made in timer callbacks (deadlines) are written at the loop's next wake-up: the
    -- sweeper of a short message_timeout wakes it every 50 ms
    limits = { message_timeout = 0.2 },
    services = {
        demo = { upstreams = { "%UP1%", "%UP2%", "%UP3%" }, deadline = 0.3, connections = 1,
                 policies = { route ]] .. route .. (extra or "") .. [[ } },
    },
}]], { up = ups })
    -- every endpoint connected before the first call, so that each takes its share
    assert(e2e.await_lines(gw, "upstream_connected service=demo", 3))
    return ups, gw, assert(h.client(gw.addr))
end

local function seen(ups)
    local out = {}
    for i, up in ipairs(ups) do out[i] = e2e.seen(up) end
    return out
end

local function all_ok(c, n, method, params)
    for i = 1, n do
        local r, err = c:call(method or "demo.echo", params or { i })
        assert.is_nil(err)
        assert.is_not_nil(r)
    end
end

describe("route (end to end)", function()
    after_each(h.cleanup)

    it("round_robin spreads calls evenly over the upstreams", function()
        local ups, _, c = setup([[{ strategy = "round_robin" }]])
        all_ok(c, 30)
        assert.same({ 10, 10, 10 }, seen(ups))
    end)

    it("weighted spreads calls in proportion to the weights", function()
        local ups, _, c = setup([[{ strategy = "weighted", weights = { 3, 1, 0 } }]])
        all_ok(c, 40)
        assert.same({ 30, 10, 0 }, seen(ups))
    end)

    it("least_outstanding sends calls to the upstream with the fewest calls in flight", function()
        local ups, _, c = setup([[{ strategy = "least_outstanding" }]])
        -- two slow calls keep two upstreams busy
        local slow = { assert(c:request("demo.sleep", { 250, "a" })),
                       assert(c:request("demo.sleep", { 250, "b" })) }
        all_ok(c, 10)
        local n = seen(ups)
        table.sort(n)
        assert.same({ 1, 1, 10 }, n)
        assert(c:wait_all(slow, h.timeout(3)))
    end)

    it("hash sends calls with the same argument to the same upstream; a death moves only its keys", function()
        local ups, gw, c = setup([[{ strategy = "hash", arg = 1 }]])
        -- where each key belongs, computed by the same policy in this process
        local model = kit.service({ upstreams = { ups[1].addr, ups[2].addr, ups[3].addr },
                                    policies = { { name = "route", strategy = "hash", arg = 1 } } })
        -- keys enough for every upstream to own a few (the ring depends on the ports)
        local keys, owned = {}, { 0, 0, 0 }
        while #keys < 20 or math.min(owned[1], owned[2], owned[3]) < 3 do
            local k = "user-" .. (#keys + 1)
            keys[#keys + 1] = k
            local ep = model:request("echo", { k }).endpoint
            owned[ep] = owned[ep] + 1
            assert.is_true(#keys < 1000)
        end
        local function place()
            local want, where = { 0, 0, 0 }, {}
            for i, k in ipairs(keys) do
                local ep = model:request("echo", { k }).endpoint
                want[ep], where[i] = want[ep] + 3, ep
                for _ = 1, 3 do assert.equal(k, c:call("demo.echo", { k })) end
            end
            return want, where
        end
        local want, before = place()
        assert.same(want, seen(ups))

        ups[2]:kill("sigkill")
        assert(ups[2]:wait_exit())
        local lost = "upstream_lost service=demo upstream=" .. ups[2].addr:gsub("%p", "%%%0")
        assert(e2e.await_lines(gw, lost, 1))
        model:set_connected(2, 0)
        local n1, n3 = e2e.seen(ups[1]), e2e.seen(ups[3])
        local moved, after = place()
        assert.same({ n1 + moved[1], n3 + moved[3] }, { e2e.seen(ups[1]), e2e.seen(ups[3]) })
        for i, k in ipairs(keys) do
            if before[i] ~= 2 then assert.equal(before[i], after[i], k) end
        end
    end)

    it("skips an upstream that is down, with no failed call", function()
        local ups, gw, c = setup([[{ strategy = "round_robin" }]])
        ups[2]:kill("sigkill")
        assert(ups[2]:wait_exit())
        local lost = "upstream_lost service=demo upstream=" .. ups[2].addr:gsub("%p", "%%%0")
        assert(e2e.await_lines(gw, lost, 1))
        all_ok(c, 20)
        assert.same({ 10, 10 }, { e2e.seen(ups[1]), e2e.seen(ups[3]) })
    end)

    it("skips an upstream whose breaker is open, with no failed call once it opened", function()
        local ups, _, c = setup([[{ strategy = "round_robin" }]],
            [[, breaker { failures = 1, cooldown = 5 }]])
        ups[2]:kill("sigstop")
        -- three calls at once: the one sent to the stopped upstream times out and opens its breaker
        local ids = {}
        for i = 1, 3 do ids[i] = assert(c:request("demo.echo", { i })) end
        local codes = {}
        for i, r in ipairs(assert(c:wait_all(ids, h.timeout(3)))) do
            codes[i] = r.error and r.error.code or "ok"
        end
        table.sort(codes, function(a, b) return tostring(a) < tostring(b) end)
        assert.same({ 504, "ok", "ok" }, codes)
        all_ok(c, 12)
        ups[2]:kill("sigcont")
        assert(h.await_upstream_calls(ups[2], 1))
        h.pause(0.1) -- nothing else was sent to it
        assert.same({ 7, 1, 7 }, seen(ups))
    end)
end)
