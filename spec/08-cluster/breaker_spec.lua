-- Breakers across gateways (docs/scale-out.md, docs/policies.md breaker): a breaker opened on
-- one gateway is published on the Redis channel ghostgate:breaker and the other gateways treat
-- the endpoint as open at once; each then probes on its own. Real redis-server, two and three
-- real gateways, one real upstream that fails on command (demo.fail).
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"
local http = require "spec.support.http"

local BREAKER = { name = "breaker", failures = 3, cooldown = 0.5, max_cooldown = 2, count_errors = true }

local function gateway(redis, up, breaker)
    return http.start({ redis = redis.url, drain_timeout = 1,
                        services = { demo = { upstream = up.addr, deadline = 2,
                                              policies = { breaker or BREAKER } } } })
end

-- n gateways on one Redis, each subscribed before this returns (PUBSUB NUMSUB counts them).
local function gateways(n, redis, up, breaker)
    local gws, cs = {}, {}
    for i = 1, n do
        gws[i] = gateway(redis, up, breaker)
        cs[i] = assert(h.client(gws[i].addr))
    end
    assert.is_true(h.await(function()
        return redis:cmd("PUBSUB", "NUMSUB", "ghostgate:breaker") == "ghostgate:breaker\n" .. n
    end, h.timeout(5)))
    return gws, cs
end

local function open_on(c)
    for _ = 1, 3 do
        local _, err = c:call("demo.fail", { "boom" })
        assert.same({ code = 1, type = "app_error", message = "boom" }, err)
    end
end

-- Seconds until c's next call answers circuit_open (530), calling every 5 ms; nil after `limit`.
local function seen_open_within(c, limit)
    local t0 = h.now()
    local ok = h.await(function()
        local _, err = c:call("demo.echo", { "x" })
        return h.is_error(err, 530, "circuit_open")
    end, limit)
    return ok and h.now() - t0 or nil
end

local function metrics(gw)
    return http.metrics(assert(http.get(gw.admin_url .. "/metrics")).body)
end

local function messages(gw, kind, what)
    return http.sample(metrics(gw), "ghostgate_cluster_messages_total", { kind = kind, what = what })
end

describe("breakers across gateways", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("a breaker opened on one gateway is open on the other within 200 ms; each then probes on its own",
        function()
            local redis = assert(h.start_redis())
            local up = assert(h.start_upstream())
            local gws, cs = gateways(2, redis, up)
            assert.equal("ok", cs[2]:call("demo.echo", { "ok" })) -- closed on B before
            open_on(cs[1])
            local took = seen_open_within(cs[2], h.timeout(0.2))
            assert.is_not_nil(took, "B did not see A's breaker open within 200 ms")
            assert(gws[2]:wait_log('breaker_opened service=demo upstream=' .. up.addr:gsub("%p", "%%%0")
                .. ' reason="opened by a peer" cooldown=0.5'))
            -- B refused without sending: the upstream saw A's 3 failures, B's call before, and no more
            local seen = e2e.seen(up)
            local _, err = cs[2]:call("demo.echo", { "y" })
            assert(h.is_error(err, 530, "circuit_open"))
            assert.matches("^circuit open for upstream ", err.message)
            assert.equal(seen, e2e.seen(up))
            assert.equal(1, messages(gws[1], "breaker", "published"))
            assert.equal(1, messages(gws[2], "breaker", "applied"))

            -- after the cooldown A's probe succeeds and closes A; B probes on its own and closes
            assert.is_true(h.await(function() return cs[1]:call("demo.echo", { "probe" }) == "probe" end,
                h.timeout(3)))
            assert(gws[1]:wait_log("breaker_closed service=demo"))
            assert.is_true(h.await(function() return cs[2]:call("demo.echo", { "probe" }) == "probe" end,
                h.timeout(3)))
            assert(gws[2]:wait_log("breaker_closed service=demo"))
            assert.equal("z", cs[2]:call("demo.echo", { "z" }))
        end)

    it("three gateways: the other two see it open within 200 ms", function()
        local redis = assert(h.start_redis())
        local up = assert(h.start_upstream())
        local _, cs = gateways(3, redis, up)
        open_on(cs[2])
        assert.is_not_nil(seen_open_within(cs[1], h.timeout(0.2)), "the first gateway did not see it")
        assert.is_not_nil(seen_open_within(cs[3], h.timeout(0.2)), "the third gateway did not see it")
    end)

    it("a peer's open lasts the peer's cooldown, at most max_cooldown; its closed ends the wait: "
        .. "the next call probes",
        function()
            local redis = assert(h.start_redis())
            local up = assert(h.start_upstream())
            local gws, cs = gateways(1, redis, up, { name = "breaker", failures = 3, cooldown = 0.5,
                                                     max_cooldown = 60, count_errors = true })
            local function say(what)
                return redis:cmd("PUBLISH", "ghostgate:breaker", "demo " .. up.addr .. what)
            end
            assert.equal("1", say(" open 600000 peer1")) -- ten minutes: more than max_cooldown
            assert(gws[1]:wait_log("reason=\"opened by a peer\" cooldown=60"))
            local _, err = cs[1]:call("demo.echo", { 1 })
            assert(h.is_error(err, 530, "circuit_open"))
            assert.is_true(err.retry_after > 59 and err.retry_after <= 60, tostring(err.retry_after))
            assert.equal("1", say(" closed 0 peer1"))
            assert.is_true(h.await(function() return messages(gws[1], "breaker", "applied") == 2 end,
                h.timeout(2)))
            local seen = e2e.seen(up)
            assert.equal(2, cs[1]:call("demo.echo", { 2 })) -- the probe, sent
            assert.equal(seen + 1, e2e.seen(up))
            assert(gws[1]:wait_log("breaker_closed service=demo"))
        end)

    it("ignores, counts and logs escaped a message that is malformed or names what it lacks", function()
        local redis = assert(h.start_redis())
        local up = assert(h.start_upstream())
        local gws, cs = gateways(1, redis, up)
        local FORMAT = "not SERVICE UPSTREAM STATE COOLDOWN_MS SENDER"
        local bad = {
            { "demo tcp://127.0.0.1:1 open 1000 peer1", "no breaker here for this service and upstream" },
            { "nosuch " .. up.addr .. " open 1000 peer1", "no breaker here for this service and upstream" },
            { "demo " .. up.addr .. " sideways 1000 peer1", "state is neither open nor closed" },
            { "demo " .. up.addr .. " open -5 peer1", "cooldown is not 0 to 86400000 ms" },
            { "demo " .. up.addr .. " open 99999999999 peer1", "cooldown is not 0 to 86400000 ms" },
            { "demo  " .. up.addr .. " open 1000 peer1", FORMAT },
            { "demo " .. up.addr .. " open 1000", FORMAT },
            { "demo\n" .. up.addr .. " open 1000 peer1\"x=1", FORMAT },
        }
        for _, b in ipairs(bad) do
            assert.equal("1", redis:cmd("PUBLISH", "ghostgate:breaker", b[1]))
        end
        local lines = assert(e2e.await_lines(gws[1], "cluster_message_ignored", #bad))
        for i, b in ipairs(bad) do
            local want = 'channel=ghostgate:breaker reason="' .. b[2]:gsub("%p", "%%%0") .. '"'
            assert.matches(want, lines[i], 1)
        end
        -- the newline and the quote came out escaped: one line each, no forged key
        assert.matches('message="demo\\ntcp://[^ ]+ open 1000 peer1\\"x=1"$', lines[#bad])
        assert.equal(#bad, messages(gws[1], "breaker", "ignored"))
        assert.equal(0, messages(gws[1], "breaker", "applied"))
        assert.equal("ok", cs[1]:call("demo.echo", { "ok" })) -- nothing opened
    end)

    it("with Redis down the breakers stay local: the other gateway keeps calling", function()
        local redis = assert(h.start_redis())
        local up = assert(h.start_upstream())
        local gws, cs = gateways(2, redis, up)
        assert(redis:kill("sigkill"))
        assert(gws[1]:wait_log("redis_down name=cluster "))
        open_on(cs[1])
        local _, err = cs[1]:call("demo.echo", { 1 })
        assert(h.is_error(err, 530, "circuit_open"))
        for i = 1, 5 do assert.equal(i, cs[2]:call("demo.echo", { i })) end
        assert.equal(1, messages(gws[1], "breaker", "lost"))
        assert.equal(0, messages(gws[1], "breaker", "published"))
    end)

    it("share = false keeps a breaker to itself", function()
        local redis = assert(h.start_redis())
        local up = assert(h.start_upstream())
        local b = { name = "breaker", failures = 3, cooldown = 0.5, count_errors = true,
                    share = false }
        local gws, cs = gateways(2, redis, up, b)
        open_on(cs[1])
        local _, err = cs[1]:call("demo.echo", { 1 })
        assert(h.is_error(err, 530, "circuit_open"))
        assert.equal(0, messages(gws[1], "breaker", "published"))
        for i = 1, 5 do assert.equal(i, cs[2]:call("demo.echo", { i })) end
    end)
end)
