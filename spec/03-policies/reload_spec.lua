-- Hot reload: SIGHUP (or `ghostgate reload`) re-reads the config and the policies. Calls in
-- flight finish under the policies they started with, new calls use the new ones, no
-- connection is dropped; a broken file is refused and the old config stays; breaker and bucket
-- state survive a reload that leaves their service's policies unchanged.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"
local uv = require "luv"

-- SIGHUP by pid (not through the process object: cleanup must still check that the gateway
-- exits 0 on SIGTERM and did not die on its own).
local function sighup(gw)
    assert(uv.kill(gw.pid, "sighup"))
end

-- Rewrite the gateway's config file, signal it, and wait for the outcome's log line.
local function reload(gw, source, outcome)
    local before = #e2e.lines(gw, "reload")
    assert(h.write_file(gw.config_path, source))
    sighup(gw)
    local lines = assert(e2e.await_lines(gw, "reload", before + 1))
    local line = lines[before + 1]
    assert.matches(outcome or " reloaded ", line)
    return line
end

describe("Hot reload", function()
    after_each(h.cleanup)

    it("keeps calls running through 10 reloads (SIGHUP and `ghostgate reload`) with zero failures", function()
        local up = assert(h.start_upstream())
        local dir = h.tmpdir()
        local pid_file = dir .. "/gg.pid"
        local function source(i)
            return ([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1, pid_file = %q,
    services = {
        demo = { upstream = %q, deadline = 5, policies = {
            guard { allow = { "echo", "sleep", "v%d" } },
            ratelimit { rate = %d },
            breaker { failures = 5 },
            route {},
        } },
    },
}]]):format(pid_file, up.addr, i, 100000 + i)
        end
        local gw = assert(h.start_gateway(source(0)))

        -- 4 connections, each keeping 8 calls in flight (echo, and sleeps of 20 ms)
        local clients, pending = {}, {}
        local ok, failed, errors, running, n = 0, 0, {}, true, 0
        local function send(c)
            n = n + 1
            local id = n % 3 == 0 and c:request("demo.sleep", { 20, n }) or c:request("demo.echo", { n })
            pending[c][assert(id)] = n
        end
        for i = 1, 4 do
            clients[i] = assert(h.client(gw.addr))
            pending[clients[i]] = {}
            for _ = 1, 8 do send(clients[i]) end
        end
        -- The answered calls are collected first and replaced after the walk: a key added to a
        -- table during pairs() over it makes the walk undefined in Lua.
        local function pump()
            for ci, c in ipairs(clients) do
                local answered = {}
                for id in pairs(pending[c]) do
                    if c.responses[id] then answered[#answered + 1] = id end
                end
                for _, id in ipairs(answered) do
                    local r, want = c.responses[id], pending[c][id]
                    pending[c][id] = nil
                    if r.error == nil and r.result == want then
                        ok = ok + 1
                    else
                        failed = failed + 1
                        errors[#errors + 1] = h.serialize({ client = ci, id = id, want = want,
                            error = r.error, result = r.result, reloads = #e2e.lines(gw, " reloaded "),
                            bytes = h.mp.hex(r.raw) })
                    end
                    if running then send(c) end
                end
            end
            return false
        end

        for i = 1, 10 do
            local reloads = #e2e.lines(gw, " reloaded ")
            assert(h.write_file(gw.config_path, source(i)))
            if i % 2 == 0 then
                local r = assert(h.run(h.bin("ghostgate"), { "reload", "-p", pid_file }))
                assert.equal(0, r.code, r.output)
            else
                sighup(gw)
            end
            assert(h.await(function()
                pump()
                return #e2e.lines(gw, " reloaded ") > reloads
            end, h.timeout(5)), "reload " .. i)
            local target = ok + failed + 100
            assert(h.await(function()
                pump()
                return ok + failed >= target
            end, h.timeout(5)))
        end
        running = false
        assert(h.await(function()
            pump()
            for _, c in ipairs(clients) do
                if next(pending[c]) then return false end
            end
            return true
        end, h.timeout(5)))

        assert.equal(0, failed, table.concat(errors, "\n"))
        assert.is_true(ok >= 1000, ok .. " calls")
        assert.equal(10, #e2e.lines(gw, " reloaded "))
        assert.equal(0, #e2e.lines(gw, "reload_failed"))
        for _, c in ipairs(clients) do
            assert.is_false(c.closed)
            -- exactly once: no second answer to any msgid, nothing that answers no request
            assert.same({}, c.duplicates)
            assert.same({}, c.unexpected)
        end
        -- reloads happened with calls in flight: those finished under the old generation
        local on_old = 0
        for _, line in ipairs(e2e.lines(gw, " reloaded ")) do
            on_old = math.max(on_old, tonumber(line:match("calls_on_old=(%d+)")))
        end
        assert.is_true(on_old > 0, "no reload happened with calls in flight")
    end)

    it("refuses a broken file with a clear message and keeps the old config", function()
        local up = assert(h.start_upstream())
        local function source(allow)
            return ([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    services = {
        demo = { upstream = %q, deadline = 2, policies = { guard { allow = { %s } } } },
    },
}]]):format(up.addr, allow)
        end
        local gw = assert(h.start_gateway(source([["echo"]])))
        local c = assert(h.client(gw.addr))
        local _, err = c:call("demo.add", { 1, 2 })
        assert(h.is_error(err, 403, "forbidden"))

        -- a syntax error
        local line = reload(gw, "return {\n  services = {\n    demo = { upstream = ,\n", "reload_failed")
        assert.matches('reason="' .. gw.config_path .. ":3: unexpected symbol near ','", line, 1, true)
        assert.matches("kept=" .. gw.config_path, line, 1, true)
        -- a bad policy option: file, line, option
        line = reload(gw, source([["echo", "add" }, alow = { "x"]]), "reload_failed")
        assert.matches(gw.config_path .. ":4: guard: unknown option 'alow'", line, 1, true)
        -- a bad option of the gateway itself
        line = reload(gw, (source([["echo"]]):gsub("deadline = 2", "deadline = -1")), "reload_failed")
        assert.matches("services.demo.deadline: must be at least 0.001", line, 1, true)

        -- the old config is still the one in force
        assert.equal("x", c:call("demo.echo", { "x" }))
        _, err = c:call("demo.add", { 1, 2 })
        assert(h.is_error(err, 403, "forbidden"))
        -- and a good file is taken
        reload(gw, source([["echo", "add"]]))
        assert.equal(3, c:call("demo.add", { 1, 2 }))
        assert.is_false(c.closed)
    end)

    it("finishes calls in flight under the policies they started with; new calls get the new", function()
        local up = assert(h.start_upstream())
        local function source(allow)
            return ([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    services = { demo = { upstream = %q, deadline = 5, policies = { guard { allow = { %s } } } } },
}]]):format(up.addr, allow)
        end
        local gw = assert(h.start_gateway(source([["echo", "sleep"]])))
        local c = assert(h.client(gw.addr))
        local slow = assert(c:request("demo.sleep", { 300, "started before" }))
        assert(h.await_upstream_calls(up, 1))
        local line = reload(gw, source([["echo"]]))
        assert.matches("calls_on_old=1", line, 1, true)
        local _, err = c:call("demo.sleep", { 1, "after" })
        assert(h.is_error(err, 403, "forbidden"))
        local r = assert(c:wait_response(slow, h.timeout(3)))
        assert.is_nil(r.error)
        assert.equal("started before", r.result)
    end)

    it("keeps breaker and bucket state across a reload that leaves their service unchanged", function()
        local up = assert(h.start_upstream())
        local function source(deadline, failures)
            return ([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    services = {
        br = { upstream = %q, deadline = 2,
               policies = { breaker { failures = %d, cooldown = 30, count_errors = true } } },
        rl = { upstream = %q, deadline = 2, policies = { ratelimit { rate = 0.01, burst = 2 } } },
        other = { upstream = %q, deadline = %g },
    },
}]]):format(up.addr, failures, up.addr, up.addr, deadline)
        end
        local gw = assert(h.start_gateway(source(2, 1)))
        local c = assert(h.client(gw.addr))
        local _, err = c:call("br.fail", { "x" })
        assert.equal("app_error", err.type)
        _, err = c:call("br.echo", { 1 })
        assert(h.is_error(err, 530, "circuit_open"))
        assert.same({ "ok", "ok", 429 }, e2e.codes(e2e.call_n(c, 3, "rl.echo", { 1 })))
        local seen = e2e.seen(up)

        reload(gw, source(3, 1)) -- only `other` changed
        _, err = c:call("br.echo", { 1 })
        assert(h.is_error(err, 530, "circuit_open"))
        assert.same({ 429 }, e2e.codes(e2e.call_n(c, 1, "rl.echo", { 1 })))
        assert.equal(seen, e2e.seen(up))

        reload(gw, source(3, 2)) -- the breaker's options changed: a new breaker
        assert.equal(1, c:call("br.echo", { 1 }))
        assert.same({ 429 }, e2e.codes(e2e.call_n(c, 1, "rl.echo", { 1 })))
    end)

    it("leaves the running policies untouched when a reload fails while building them", function()
        local ups = { assert(h.start_upstream()), assert(h.start_upstream()) }
        local dir = h.tmpdir()
        assert(h.write_file(dir .. "/flaky.lua", [[
return { name = "flaky", priority = 1, schema = { type = "record", fields = { fail = { type = "boolean" } } },
         new = function(conf) if conf.fail then error("flaky: cannot start") end return {} end,
         access = function() end }
]]))
        local function source(extra)
            return ([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1, policy_path = %q,
    services = { demo = { upstreams = { %q, %q }, deadline = 2, connections = 1,
                          policies = { route {}, breaker { failures = 3 }%s } } },
}]]):format(dir .. "/?.lua", ups[1].addr, ups[2].addr, extra)
        end
        local gw = assert(h.start_gateway(source("")))
        assert(e2e.await_lines(gw, "upstream_connected service=demo", 2))
        local c = assert(h.client(gw.addr))
        -- route and breaker would be kept, but the new flaky instance fails: refused
        local line = reload(gw, source([[, policy "flaky" { fail = true }]]), "reload_failed")
        assert.matches("flaky: cannot start", line, 1, true)
        -- the running route still sees which endpoints are up: no call goes to a dead one
        ups[2]:kill("sigkill")
        assert(ups[2]:wait_exit())
        assert(e2e.await_lines(gw, "upstream_lost service=demo", 1))
        assert.same({ "ok", "ok", "ok", "ok", "ok", "ok" }, e2e.codes(e2e.call_n(c, 6, "demo.echo", { 1 })))
        assert.equal(6, e2e.seen(ups[1]))
    end)

    it("re-reads user policy files: a changed one takes effect, an unchanged one keeps its state", function()
        local up = assert(h.start_upstream())
        local dir = h.tmpdir()
        local function policy(answer)
            assert(h.write_file(dir .. "/canned.lua", ([[
return { name = "canned", new = function() return { n = 0 } end,
         access = function(self, ctx)
             self.n = self.n + 1
             if ctx.method == "canned" then ctx:respond({ %q, self.n }) end
         end }
]]):format(answer)))
        end
        local function source(deadline)
            return ([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1, policy_path = %q,
    services = { demo = { upstream = %q, deadline = %g, policies = { policy "canned" {} } } },
}]]):format(dir .. "/?.lua", up.addr, deadline)
        end
        policy("v1")
        local gw = assert(h.start_gateway(source(2)))
        local c = assert(h.client(gw.addr))
        assert.same({ "v1", 1 }, c:call("demo.canned", {}))
        reload(gw, source(3))
        assert.same({ "v1", 2 }, c:call("demo.canned", {})) -- same file: same instance
        policy("v2")
        reload(gw, source(3))
        assert.same({ "v2", 1 }, c:call("demo.canned", {})) -- new code, new instance
        assert.equal(0, e2e.seen(up))
    end)
end)
