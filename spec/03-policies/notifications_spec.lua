-- Notifications meet the policies: a client's notification ([2, "svc.method", params] over
-- MessagePack-RPC, a request without `id` over the HTTP front door) passes the same request-phase
-- decisions as a call (guard, auth and its scopes, ratelimit, a custom policy's decide and access
-- phases). A notification has no answer, so a refused one is silent to the sender: it is dropped,
-- counted in /metrics (ghostgate_notifications_dropped_total by service and reason) and logged
-- (notification_dropped) at a bounded rate. See docs/protocol.md, Notifications.
local h = require "spec.support.helpers"
local http = require "spec.support.http"
local e2e = require "spec.support.policy_e2e"

local KEY_CI = "ci-key-0123456789abcdef"
local KEY_RO = "ro-key-0123456789abcdef"

local DECIDER = [[
return {
    name = "decider", priority = 500,
    new = function() return {} end,
    decide = function(_, method)
        if method:sub(1, 7) == "blocked" then return 403, "blocked by decider" end
    end,
}
]]

local GATEKEEPER = [[
return {
    name = "gatekeeper", priority = 400,
    new = function() return {} end,
    access = function(_, ctx)
        if ctx:args()[1] == "deny" then return ctx:reject(403, "denied by gatekeeper") end
        if ctx.notification and ctx.method == "echo" then
            return ctx:reject("forbidden", "echo is for calls only")
        end
    end,
}
]]

local function setup()
    local up = assert(h.start_upstream())
    local dir = h.tmpdir()
    assert(h.write_file(dir .. "/decider.lua", DECIDER))
    assert(h.write_file(dir .. "/gatekeeper.lua", GATEKEEPER))
    local gw = http.start({
        policy_path = dir .. "/?.lua",
        auth = {
            keys = {
                [KEY_CI] = { identity = "ci", scopes = { "calc.*" } },
                [KEY_RO] = { identity = "ro", scopes = { "calc.get_*" } },
            },
        },
        services = {
            calc = { upstreams = { up.addr }, deadline = 5, policies = {
                { name = "guard", allow = { "get_*", "reset_everything" } },
                { name = "auth" },
            } },
            limited = { upstreams = { up.addr }, deadline = 5, policies = {
                { name = "ratelimit", rate = 0.001, burst = 2, by = "service" },
            } },
            custom = { upstreams = { up.addr }, deadline = 5, policies = {
                { name = "decider" }, { name = "gatekeeper" },
            } },
            open = { upstreams = { up.addr }, deadline = 5 },
        },
    })
    return up, gw
end

-- The two ways in. send(method, params, token) returns once the gateway has handled the
-- notification: over MessagePack-RPC a call on the same connection is answered after it, over
-- HTTP the 204 is written after it.
local transports = {
    {
        name = "MessagePack-RPC",
        new = function(gw)
            local conns = {}
            local function conn(token)
                local key = token or ""
                if not conns[key] then
                    local c = assert(h.client(gw.addr))
                    if token then assert(c:call("ghost.auth", { token })) end
                    conns[key] = c
                end
                return conns[key]
            end
            return function(method, params, token)
                local c = conn(token)
                assert(c:notify(method, params))
                assert.equal("pong", c:call("ghost.ping", {}))
            end
        end,
    },
    {
        name = "HTTP JSON-RPC",
        new = function(gw)
            return function(method, params, token)
                local opts = token and { headers = { "Authorization: Bearer " .. token } } or nil
                local r = assert(http.rpc(gw, { jsonrpc = "2.0", method = method, params = params }, opts))
                assert.equal(204, r.status)
                assert.equal("", r.body)
            end
        end,
    },
}

-- Wait until the upstream's last notification is `marker` (sent after the refused ones, which
-- the gateway handled first), then check that exactly `n` notifications reached it.
local function delivered(up, gw, marker, n)
    local c = assert(h.client(gw.addr))
    local last = h.retry(function()
        local v = c:call("open.last_notification", {})
        return type(v) == "table" and v[2] and v[2][1] == marker and v, "marker not seen yet"
    end, h.timeout(5), 0.02)
    assert.is_table(last)
    assert.equal(n, assert(h.upstream_stats(up)).notifications, gw.proc:tail(30))
end

local function dropped(gw, service, reason)
    local r = assert(http.get(gw.admin_url .. "/metrics"))
    return http.sample(http.metrics(r.body), "ghostgate_notifications_dropped_total",
        { service = service, reason = reason }) or 0
end

local function sent(gw, service)
    local r = assert(http.get(gw.admin_url .. "/metrics"))
    return http.sample(http.metrics(r.body), "ghostgate_notifications_total", { service = service })
end

for _, t in ipairs(transports) do
    describe("Notifications over " .. t.name .. " meet the service's policies", function()
        after_each(function()
            http.cleanup()
            h.cleanup()
        end)

        it("auth: an unauthenticated client's notification is dropped as unauthenticated", function()
            local up, gw = setup()
            local send = t.new(gw)
            send("calc.reset_everything", { "anon" })
            send("calc.reset_everything", { "ci" }, KEY_CI)
            delivered(up, gw, "ci", 1)
            assert.equal(1, dropped(gw, "calc", "unauthenticated"))
            assert.equal(1, sent(gw, "calc"))
            assert(gw:wait_log('warn notification_dropped service=calc method="calc.reset_everything" '
                .. 'reason=unauthenticated why="service \'calc\' requires authentication: call '
                .. 'ghost.auth%(token%) first"', h.timeout(2)))
        end)

        it("auth scopes: an identity without a scope for the method is dropped as forbidden", function()
            local up, gw = setup()
            local send = t.new(gw)
            send("calc.reset_everything", { "ro" }, KEY_RO)
            send("calc.get_total", { "ro ok" }, KEY_RO)
            delivered(up, gw, "ro ok", 1)
            assert.equal(1, dropped(gw, "calc", "forbidden"))
            assert(gw:wait_log("notification_dropped service=calc method=\"calc.reset_everything\" "
                .. "reason=forbidden why=\"identity 'ro' has no scope for 'calc.reset_everything'\"",
                h.timeout(2)))
        end)

        it("guard: a name the guard refuses (a private _name) is dropped as forbidden", function()
            local up, gw = setup()
            local send = t.new(gw)
            send("calc._internal", { "x" }, KEY_CI)
            send("calc.not_allowed", { "y" }, KEY_CI)
            send("calc.get_total", { "ok" }, KEY_CI)
            delivered(up, gw, "ok", 1)
            assert.equal(2, dropped(gw, "calc", "forbidden"))
            assert(gw:wait_log('notification_dropped service=calc method="calc._internal" reason=forbidden',
                h.timeout(2)))
        end)

        it("ratelimit: a notification takes a token like a call; over the limit it is dropped", function()
            local up, gw = setup()
            local send = t.new(gw)
            send("limited.tick", { 1 })
            send("limited.tick", { 2 })
            send("limited.tick", { 3 }) -- burst 2: no token left
            delivered(up, gw, 2, 2)
            assert.equal(1, dropped(gw, "limited", "rate_limited"))
            assert.equal(2, sent(gw, "limited"))
            -- the notifications took the tokens a call would have had
            local c = assert(h.client(gw.addr))
            local res, err = c:call("limited.echo", { "x" })
            assert.is_nil(res)
            assert(h.is_error(err, 429, "rate_limited"))
        end)

        it("a custom decide phase refuses a notification like a call", function()
            local up, gw = setup()
            local send = t.new(gw)
            send("custom.blocked_op", { "x" })
            send("custom.fine", { "fine" })
            delivered(up, gw, "fine", 1)
            assert.equal(1, dropped(gw, "custom", "forbidden"))
            assert(gw:wait_log('notification_dropped service=custom method="custom.blocked_op" '
                .. 'reason=forbidden why="blocked by decider"', h.timeout(2)))
        end)

        it("a custom access phase sees the params and ctx.notification, and refuses", function()
            local up, gw = setup()
            local send = t.new(gw)
            send("custom.op", { "deny" })
            send("custom.echo", { "x" })
            send("custom.op", { "allow" })
            delivered(up, gw, "allow", 1, gw)
            assert.equal(2, dropped(gw, "custom", "forbidden"))
            assert(gw:wait_log('notification_dropped service=custom method="custom.op" '
                .. 'reason=forbidden why="denied by gatekeeper"', h.timeout(2)))
            assert(gw:wait_log('method="custom.echo" reason=forbidden why="echo is for calls only"',
                h.timeout(2)))
            -- the same method as a call passes: ctx.notification is false for calls
            local c = assert(h.client(gw.addr))
            assert.equal("y", c:call("custom.echo", { "y" }))
        end)
    end)
end

describe("Dropped notifications", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("are logged with the method escaped: a sender cannot forge a log line", function()
        local _, gw = setup()
        local c = assert(h.client(gw.addr))
        assert(c:notify('calc.x"\n2026-01-01T00:00:00.000Z error forged', {}))
        assert(c:notify("nosuch.\1\255", {}))
        assert.equal("pong", c:call("ghost.ping", {}))
        assert(gw:wait_log('notification_dropped service=calc method="calc.x\\"\\n'
            .. '2026%-01%-01T00:00:00.000Z error forged" reason=bad_request', h.timeout(2)))
        assert(gw:wait_log('notification_dropped service=%- method="nosuch.\\x01\\xff" '
            .. 'reason=bad_request', h.timeout(2)))
        assert.same({}, e2e.lines(gw, "^2026%-01%-01T00:00:00.000Z error forged"))
        assert.equal(1, dropped(gw, "", "bad_request"))
    end)

    it("are logged at a bounded rate, and every one is counted", function()
        local _, gw = setup()
        local c = assert(h.client(gw.addr))
        for i = 1, 50 do
            assert(c:notify("calc.reset_everything", { i }))
        end
        assert.equal("pong", c:call("ghost.ping", {}))
        assert.equal(50, dropped(gw, "calc", "unauthenticated"))
        -- 10 lines a second at most: 50 sent at once span at most two seconds
        local n = #assert(e2e.await_lines(gw, "notification_dropped", 10))
        assert.is_true(n <= 20, n .. " lines")
        -- a later line says how many were left out
        local line = h.retry(function()
            assert(c:notify("calc.reset_everything", { "later" }))
            assert.equal("pong", c:call("ghost.ping", {}))
            local l = e2e.lines(gw, "notification_dropped .* suppressed=%d+$")
            return l[1], "no line with suppressed= yet"
        end, h.timeout(5), 0.1)
        assert.is_string(line)
        assert.is_true(tonumber(line:match("suppressed=(%d+)$")) >= 30, line)
    end)
end)

describe("A notification let through", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("gives back what an access phase took: a half-open breaker's probe stays free", function()
        local up = assert(h.start_upstream())
        local gw = http.start({ services = { fragile = { upstreams = { up.addr }, deadline = 0.2,
            policies = { { name = "breaker", failures = 1, cooldown = 0.3, probes = 1 } } } } })
        local c = assert(h.client(gw.addr))
        local _, err = c:call("fragile.hang", {})
        assert(h.is_error(err, 504, "deadline_exceeded")) -- the breaker opens
        -- notifications are refused while it is open; the first after the cooldown is a probe
        assert(h.retry(function()
            assert(c:notify("fragile.ping", {}))
            assert.equal("pong", c:call("ghost.ping", {}))
            return sent(gw, "fragile") == 1, "not sent yet"
        end, h.timeout(5), 0.05))
        assert.is_true(dropped(gw, "fragile", "circuit_open") >= 1)
        -- a notification has no answer to judge: the breaker is still half-open...
        local function state()
            local r = assert(http.get(gw.admin_url .. "/metrics"))
            return http.sample(http.metrics(r.body), "ghostgate_breaker_state", { service = "fragile" })
        end
        assert.equal(2, state())
        -- ...and the probe was given back: the next call is the probe, and closes the breaker
        assert.equal("x", c:call("fragile.echo", { "x" }))
        assert.equal(0, state())
        assert.equal("y", c:call("fragile.echo", { "y" }))
    end)
end)
