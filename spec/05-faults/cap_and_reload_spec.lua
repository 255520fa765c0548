-- The connection cap and config reloads, under load. What must hold: a connection over
-- limits.max_clients is refused (closed at once) while the connections already in use see no
-- error and no disconnection; SIGHUP reloads (good ones, and a broken one that is refused) while
-- ghost-bench keeps calls in flight fail no call and leave none unanswered.
-- (spec/02-core/limits_spec.lua checks the cap with idle clients; spec/03-policies checks what a
-- reload changes; here both happen under load.)
local h = require "spec.support.helpers"
local load = require "spec.support.load"
local uv = require "luv"

-- CPU seconds (user + system) a process has used, from /proc/PID/stat.
local function cpu_seconds(pid)
    local s = h.read_file("/proc/" .. pid .. "/stat")
    if not s then
        return nil
    end
    local fields = {}
    for f in s:match("%)%s+(.*)"):gmatch("%S+") do
        fields[#fields + 1] = f
    end
    -- after the command: state is field 3 of the file, utime 14 and stime 15
    return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

describe("Connection cap and reload under load", function()
    after_each(function()
        load.cleanup()
        h.cleanup()
    end)

    it("max_clients = 40 with 30 connections under load: each connection over the cap is closed at once, "
        .. "the loaded connections see no error and no disconnection, a freed slot is usable again",
    function()
        local d = h.setup_demo({ config = { limits = { max_clients = 40 } } })
        d.c:close() -- the fixture's client would take a slot
        local bench = assert(load.bench_start(d.gw.addr,
            { conns = 30, depth = 2, seconds = 3, warmup = 0.2 }))
        -- ghost-bench sends once all its connections are up
        assert(h.await_upstream_calls(d.up, 30, h.timeout(5)))
        local fillers = {}
        for i = 1, 9 do -- 30 + 9 connections, below the cap
            fillers[i] = assert(h.client(d.gw.addr))
            assert.equal(i, fillers[i]:call("demo.echo", { i }))
        end
        local tenth = assert(h.client(d.gw.addr)) -- the 40th: at the cap, still accepted
        assert.equal("40th", tenth:call("demo.echo", { "40th" }))

        local refused, t0 = 0, h.now()
        for _ = 1, 50 do
            local c, err = h.client(d.gw.addr)
            if c then
                local id = c:request("demo.echo", { "over" })
                assert(c:wait_closed(h.timeout(2)), "a connection over the cap was not closed")
                local r = id and c.responses[id]
                assert.is_true(r == nil or h.is_error(r.error, 503, "overloaded") == true)
                refused = refused + 1
            else
                assert.matches("ECONNREFUSED", err)
                refused = refused + 1
            end
        end
        local took = h.now() - t0
        assert.equal(50, refused)
        assert.is_true(took < h.timeout(5), "refusing 50 connections took " .. took .. " s")

        local r = assert(load.bench_wait(bench))
        load.note("cap: 50 refused in %.2f s; ghost-bench meanwhile: %s", took, r.line)
        assert.equal(0, r.errors, r.line .. "\n" .. r.stderr)
        assert.equal(0, r.unanswered, r.line)
        assert.equal(0, r.code, r.stderr)
        for i, c in ipairs(fillers) do
            assert.equal(i * 10, c:call("demo.echo", { i * 10 }))
        end
        -- a slot freed is a slot available again
        fillers[1]:close()
        assert.equal("again", assert(h.retry(function()
            local c = h.client(d.gw.addr)
            if not c then
                return nil, "connect failed"
            end
            local v, e = c:call("demo.echo", { "again" }, 1)
            if not v then
                c:close()
            end
            return v, e
        end, h.timeout(5))))
    end)

    it("out of file descriptors (soft limit 128, max_clients 10000): connections over what it can open are "
        .. "refused, the open ones keep working, the gateway does not spin, and accepts again once some "
        .. "close",
    function()
        local up = assert(h.start_upstream())
        local dir = h.tmpdir()
        local path = dir .. "/gateway.lua"
        assert(h.write_file(path, "return " .. h.serialize({
            listen = "tcp://127.0.0.1:0", drain_timeout = 2,
            services = { demo = { upstreams = { up.addr } } },
        })))
        local gw = assert(h.spawn("sh", { "-c", 'ulimit -n 128 && exec "$0" "$@"', h.bin("ghostgate"),
            "serve", "-c", path, "--log-level", "info" }, { name = "ghostgate", strict = true }))
        local addr = assert(gw:wait_line("ready listen=", h.timeout(10))):match("ready listen=(%S+)")
        local first = assert(h.client(addr))
        assert.equal("first", first:call("demo.echo", { "first" }))
        local conns = {}
        for i = 1, 200 do
            conns[i] = load.raw(addr, { read = true }) -- nil when refused outright
        end
        h.pause(0.5)
        local open = 0
        for i = 1, 200 do
            if conns[i] and not conns[i].closed then
                open = open + 1
            end
        end
        assert.is_true(open < 128 and open > 50, open .. " of 200 connections held open with 128 descriptors")
        -- no busy loop on EMFILE: a second of CPU time over two seconds would be one
        local cpu0 = cpu_seconds(gw.pid)
        h.pause(1)
        local spent = cpu_seconds(gw.pid) - cpu0
        assert.is_true(spent < 0.3,
            "the gateway used " .. spent .. " s of CPU in 1 s while out of descriptors")
        assert.equal("still", first:call("demo.echo", { "still" }))
        for i = 1, 200 do
            if conns[i] then
                conns[i]:close()
            end
        end
        assert.equal("again", assert(h.retry(function()
            local c = h.client(addr)
            if not c then
                return nil, "connect failed"
            end
            local v, e = c:call("demo.echo", { "again" }, 1)
            if not v then
                c:close()
            end
            return v, e
        end, h.timeout(5))))
        load.note("out of descriptors: %d of 200 held open, %.2f s CPU in 1 s", open, spent)
    end)

    it("10 SIGHUP reloads (and a broken config, refused) under load: zero failed calls, zero unanswered, "
        .. "every reload applied", function()
        local up = assert(h.start_upstream())
        local function config(i, broken)
            if broken then
                return "return { services = { demo = { upstreams = 42 } } }\n"
            end
            -- each reload changes something real: the deadline, and a policy in or out
            return string.format([[
return {
    listen = "tcp://127.0.0.1:0",
    drain_timeout = 2,
    services = {
        demo = {
            upstreams = { %q },
            deadline = %d,
            policies = { %s },
        },
    },
}
]], up.addr, 10 + i, i % 2 == 0 and 'guard { allow = { "*" } }' or "")
        end
        local gw = assert(h.start_gateway(config(0)))
        local bench = assert(load.bench_start(gw.addr, { conns = 8, depth = 4, seconds = 4, warmup = 0.2 }))
        assert(h.await_upstream_calls(up, 100, h.timeout(5)))
        local from = #gw.proc.lines + 1
        local reloads = 0
        for i = 1, 11 do
            local broken = i == 6
            assert(h.write_file(gw.config_path, config(i, broken)))
            assert(uv.kill(gw.pid, "sighup")) -- not proc:kill: this is not "told to stop"
            local line, idx = gw:wait_log(broken and "reload_failed" or "reloaded", h.timeout(5), from)
            assert(line, "reload " .. i .. " not logged")
            from = idx + 1
            reloads = reloads + (broken and 0 or 1)
            h.pause(0.2)
        end
        local r = assert(load.bench_wait(bench))
        load.note("10 reloads + 1 refused under load: %s", r.line)
        assert.equal(10, reloads)
        assert.equal(0, r.errors, r.line .. "\n" .. r.stderr)
        assert.equal(0, r.unanswered, r.line)
        assert.equal(0, r.code, r.stderr)
        assert.is_true(r.calls > 1000, r.line)
        -- the last config is the one in force: deadline 21 s, no guard
        local c = assert(h.client(gw.addr))
        assert.equal("last", c:call("demo.echo", { "last" }))
    end)
end)
