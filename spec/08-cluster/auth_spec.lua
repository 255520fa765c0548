-- Failed authentications counted across gateways (docs/scale-out.md, docs/configuration.md
-- auth): the wrong tokens one client address sends to any gateway on the Redis count against
-- one limit, so a client cannot multiply its guesses by the number of gateways. Real
-- redis-server, two real gateways.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"
local http = require "spec.support.http"

local KEY = "ci-key-0123456789abcdef"

local function gateway(redis, up)
    return http.start({ redis = redis.url, drain_timeout = 1,
                        auth = { keys = { [KEY] = { identity = "ci" } }, failures = 4, failure_window = 60 },
                        services = { demo = { upstream = up.addr, policies = { "auth" } } } })
end

local function gateways(redis, up)
    local a, b = gateway(redis, up), gateway(redis, up)
    assert.is_true(h.await(function()
        return redis:cmd("PUBSUB", "NUMSUB", "ghostgate:auth") == "ghostgate:auth\n2"
    end, h.timeout(5)))
    return a, b
end

local function auth(gw, token)
    local c = assert(h.client(gw.addr)) -- a new connection each time, from 127.0.0.1
    local r, err = c:call("ghost.auth", { token })
    c:close()
    return r, err
end

local function wrong(gw, n)
    for _ = 1, n do
        local _, err = auth(gw, "wrong-token")
        assert(h.is_error(err, 401, "unauthenticated"))
    end
end

local function messages(gw, what)
    local m = http.metrics(assert(http.get(gw.admin_url .. "/metrics")).body)
    return http.sample(m, "ghostgate_cluster_messages_total", { kind = "auth", what = what })
end

describe("auth failure throttling across gateways", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("counts one client address's wrong tokens on every gateway against one limit, then both answer 429",
        function()
            local redis = assert(h.start_redis())
            local up = assert(h.start_upstream())
            local a, b = gateways(redis, up)
            wrong(a, 2)
            assert.is_true(h.await(function()
                return redis:cmd("GET", "ghostgate:authfail:{127.0.0.1}") == "2"
            end, h.timeout(2)))
            local ttl = tonumber(redis:cmd("PTTL", "ghostgate:authfail:{127.0.0.1}"))
            assert.is_true(ttl > 55000 and ttl <= 60000, tostring(ttl))
            wrong(b, 2) -- alone, each gateway has seen 2 of the 4 allowed
            assert(b:wait_log("auth_throttled peer=127.0.0.1 failures=4 scope=cluster retry_after_ms="))
            assert(a:wait_log("auth_throttled peer=127.0.0.1 scope=cluster retry_after_ms="))
            for _, gw in ipairs({ a, b }) do
                local _, err = auth(gw, KEY) -- even the right key
                assert(h.is_error(err, 429, "rate_limited"))
                assert.matches("^too many failed authentications, retry after", err.message)
                assert.is_true(err.retry_after > 55 and err.retry_after <= 60, tostring(err.retry_after))
            end
            assert.equal(1, messages(b, "published"))
            assert.equal(1, messages(a, "applied"))
            -- refused attempts cost no Redis command: the count stays at 4
            assert.equal("4", redis:cmd("GET", "ghostgate:authfail:{127.0.0.1}"))
        end)

    it("with Redis down each gateway throttles on its own count", function()
        local redis = assert(h.start_redis())
        local up = assert(h.start_upstream())
        local a, b = gateways(redis, up)
        assert(redis:kill("sigkill"))
        assert(a:wait_log("redis_down name=cluster "))
        wrong(a, 4)
        local _, err = auth(a, KEY)
        assert(h.is_error(err, 429, "rate_limited"))
        assert.same({ identity = "ci" }, auth(b, KEY))
    end)

    it("ignores, counts and logs escaped a malformed message", function()
        local redis = assert(h.start_redis())
        local up = assert(h.start_upstream())
        local a = gateways(redis, up)
        local bad = {
            { "127.0.0.1 0 peer1", "wait is not 1 to 86400000 ms" },
            { "127.0.0.1 soon peer1", "wait is not 1 to 86400000 ms" },
            { "127.0.0.1 1000", "not ADDR WAIT_MS SENDER" },
            { "127.0.0.1 1000 peer1 extra", "not ADDR WAIT_MS SENDER" },
            { "127.0.0.1\n 1000 peer\"1", "not ADDR WAIT_MS SENDER" },
        }
        for _, m in ipairs(bad) do
            assert.equal("2", redis:cmd("PUBLISH", "ghostgate:auth", m[1]))
        end
        local lines = assert(e2e.await_lines(a, "cluster_message_ignored", #bad))
        for i, m in ipairs(bad) do
            assert.matches('channel=ghostgate:auth reason="' .. m[2] .. '"', lines[i], 1, true)
        end
        assert.matches('message="127.0.0.1\\n 1000 peer\\"1"$', lines[#bad])
        assert.equal(#bad, messages(a, "ignored"))
        assert.same({ identity = "ci" }, auth(a, KEY)) -- nothing throttled
    end)
end)
