-- discover = true (docs/scale-out.md#discovery): a service takes its endpoints from the Redis
-- registry and follows it in place, without a restart or a reload. Real redis-server, real
-- gateways, real ghost-upstream backends registered with `ghostgate register`.
local h = require "spec.support.helpers"
local http = require "spec.support.http"
local uv = require "luv"

local function config(redis, resync, extra)
    local cfg = { redis = redis.url, discover_resync = resync or 5, http = false,
                  services = { calc = { discover = true, deadline = h.timeout(3) } } }
    for k, v in pairs(extra or {}) do
        cfg[k] = v
    end
    return cfg
end

local function gateway(redis, resync, extra)
    return http.start(config(redis, resync, extra))
end

-- A ghost-upstream (up, or a new one) registered for calc by `ghostgate register` (ttl
-- seconds, default 10).
local function backend(redis, ttl, up)
    up = up or assert(h.start_upstream())
    up.reg = assert(h.spawn(h.bin("ghostgate"), { "register", "-r", redis.url, "-s", "calc", "-a",
        up.addr, "--ttl", tostring(ttl or 10) }, { name = "ghostgate-register" }))
    assert(up.reg:wait_line("registered service=calc addr=" .. up.addr:gsub("%p", "%%%0")))
    return up
end

local function routes(gw)
    local r = assert(http.get(gw.admin_url .. "/routes"))
    assert.equal(200, r.status)
    return r.json.services[1]
end

-- calc's endpoints in /routes: address -> its entry.
local function endpoints(gw)
    local out = {}
    for _, u in ipairs(routes(gw).upstreams) do
        out[u.address] = u
    end
    return out
end

-- Wait until /routes lists exactly `addrs` (live, with a connection up).
local function await_endpoints(gw, addrs, timeout)
    return h.await(function()
        local eps, n = endpoints(gw), 0
        for _ in pairs(eps) do
            n = n + 1
        end
        if n ~= #addrs then return false end
        for _, a in ipairs(addrs) do
            local e = eps[a]
            if not e or e.draining or e.connected < 1 then return false end
        end
        return true
    end, timeout or h.timeout(5))
end

local function calls_seen(up)
    local s = assert(h.upstream_stats(up))
    return s.calls - up.stats_calls
end

-- Calls calc.echo in batches of 5 until done() is true (or 5 s); counts answers.
local function run_calls(c, done, count)
    count = count or { ok = 0, failed = {} }
    local t_end = h.now() + h.timeout(5)
    repeat
        local ids = {}
        for i = 1, 5 do
            ids[i] = assert(c:request("calc.echo", { i }))
        end
        for i, r in ipairs(assert(c:wait_all(ids))) do
            if r.error == nil then
                count.ok = count.ok + 1
            else
                count.failed[#count.failed + 1] = r.error
            end
            c.responses[ids[i]] = nil
        end
    until done() or h.now() > t_end
    return count
end

describe("discover = true", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("with no endpoint registered, calls fail at once and /ready says why", function()
        local redis = assert(h.start_redis())
        local gw = gateway(redis)
        local c = assert(h.client(gw.addr))
        local t0 = h.now()
        local _, err = c:call("calc.echo", { 1 })
        assert(h.is_error(err, 502, "upstream_unavailable"))
        assert.equal("no endpoint registered for service 'calc'", err.message)
        assert.is_true(h.now() - t0 < 0.5)
        local r = assert(http.get(gw.admin_url .. "/ready"))
        assert.equal(503, r.status)
        assert.same({ service = "calc", reason = "no endpoint registered", upstreams = {} },
            r.json.not_ready[1])
        assert.is_true(routes(gw).discover)
        assert.is_true(h.await(function() return routes(gw).registry == "fresh" end, h.timeout(3)))
    end)

    it("an endpoint registered while calls run gets traffic within 1 s, no call failing", function()
        local redis = assert(h.start_redis())
        local a = backend(redis)
        local gw = gateway(redis)
        assert.is_true(await_endpoints(gw, { a.addr }))
        local c = assert(h.client(gw.addr))
        local count = run_calls(c, function() return true end)
        local b = backend(redis)
        local t0 = h.now()
        run_calls(c, function() return calls_seen(b) > 0 end, count)
        assert.is_true(h.now() - t0 < h.timeout(1), "no traffic to the new endpoint within 1 s")
        assert.same({}, count.failed)
        assert.is_true(calls_seen(a) > 0)
        assert(gw:wait_log("endpoint_added service=calc upstream=" .. b.addr:gsub("%p", "%%%0")))
        -- ready, and the policies' view: /metrics counts the endpoints the registry lists
        assert.equal(200, assert(http.get(gw.admin_url .. "/ready")).status)
        local m = http.metrics(assert(http.get(gw.admin_url .. "/metrics")).body)
        local known
        for _, s in ipairs(m) do
            if s.name == "ghostgate_registry_endpoints" and s.labels.service == "calc" then
                known = s.value
            end
        end
        assert.equal(2, known)
    end)

    it("a deregistered endpoint leaves at once; its calls go to the others", function()
        local redis = assert(h.start_redis())
        local a, b = backend(redis), backend(redis)
        local gw = gateway(redis, 3600) -- only the hint can tell it in time
        assert.is_true(await_endpoints(gw, { a.addr, b.addr }))
        assert(b.reg:kill("sigterm"))
        assert.equal(0, b.reg:wait_exit())
        local t0 = h.now()
        assert.is_true(await_endpoints(gw, { a.addr }, h.timeout(2)))
        assert.is_true(h.now() - t0 < h.timeout(1))
        local c = assert(h.client(gw.addr))
        local before = calls_seen(b)
        local count = run_calls(c, function() return true end)
        assert.same({}, count.failed)
        assert.equal(before, calls_seen(b))
        assert(gw:wait_log("endpoint_drained service=calc upstream=" .. b.addr:gsub("%p", "%%%0")))
        -- /metrics shows the endpoints in the pool, not its free numbers
        local m = http.metrics(assert(http.get(gw.admin_url .. "/metrics")).body)
        local ups = {}
        for _, smp in ipairs(m) do
            if smp.name == "ghostgate_upstream_connections" then ups[#ups + 1] = smp.labels.upstream end
        end
        assert.same({ a.addr }, ups)
    end)

    it("an endpoint killed without deregistering leaves after its TTL; calls fail over", function()
        local redis = assert(h.start_redis())
        local a, b = backend(redis, 10), backend(redis, 1)
        local gw = gateway(redis, 0.3)
        assert.is_true(await_endpoints(gw, { a.addr, b.addr }))
        assert(b.reg:kill("sigkill"))
        assert(b.proc:kill("sigkill"))
        local t0 = h.now()
        -- the pool sees the connection drop: calls go to the live endpoint
        assert.is_true(h.await(function() return endpoints(gw)[b.addr].connected == 0 end, h.timeout(2)))
        local c = assert(h.client(gw.addr))
        local count = run_calls(c, function() return true end)
        assert.same({}, count.failed)
        -- still listed until its key lapses, then gone at the next resync
        assert.is_true(await_endpoints(gw, { a.addr }, h.timeout(5)))
        assert.is_true(h.now() - t0 < h.timeout(1 + 0.3 + 1)) -- TTL, resync, slack
        assert.equal("0", redis:cmd("SISMEMBER", "ghostgate:{calc}:eps", b.addr)) -- pruned
    end)

    it("a removed endpoint finishes its calls in flight before its connections close", function()
        local redis = assert(h.start_redis())
        local b = backend(redis)
        local gw = gateway(redis)
        assert.is_true(await_endpoints(gw, { b.addr }))
        local c = assert(h.client(gw.addr))
        local a_up = assert(h.start_upstream()) -- registered below, once the slow call runs on b
        local slow = assert(c:request("calc.sleep", { math.floor(h.timeout(2) * 1000), "done" }))
        local a = backend(redis, 10, a_up)
        assert.is_true(h.await(function() return endpoints(gw)[a.addr] ~= nil end, h.timeout(2)))
        assert(b.reg:kill("sigterm"))
        assert.is_true(h.await(function()
            local e = endpoints(gw)[b.addr]
            return e and e.draining == true
        end, h.timeout(2)))
        assert.same({}, run_calls(c, function() return true end).failed)
        local r = assert(c:wait_response(slow, h.timeout(5)))
        assert.is_nil(r.error)
        assert.equal("done", r.result)
        assert.is_true(await_endpoints(gw, { a.addr }, h.timeout(2)))
        assert.is_true(h.await(function() return assert(h.upstream_stats(b)).connections <= 1 end,
            h.timeout(2))) -- only upstream_stats' own connection is left
    end)

    it("a removed endpoint keeps serving references into it until they are released", function()
        local redis = assert(h.start_redis())
        local a = assert(h.start_backend([[
local ghost = require "ghost"
local files = {}
function files.open(name)
    local f = { name = name, n = 0 }
    function f:write() self.n = self.n + 1; return self.n end
    return ghost.ref(f)
end
ghost.serve(files, "tcp://127.0.0.1:0", { register = { redis = arg[1], service = "calc", ttl = 60 } })
]], { redis.url }))
        local gw = http.start(config(redis, 5, { services = { calc = { discover = true, objects = true,
            deadline = h.timeout(3) } } }))
        assert.is_true(await_endpoints(gw, { a.addr }))
        local c = assert(h.client(gw.addr))
        local r = assert(c:wait_response(assert(c:request("calc.open", { "a.txt" }))))
        assert.is_nil(r.error)
        local id = r.raw_result:match("^\199.\064\146(.+)\145\165write$")
        assert.is_not_nil(id, r.raw_result)
        local function write()
            local ext = "\199" .. string.char(#id) .. "\65" .. id
            return assert(c:wait_response(assert(c:request("$call", { h.mp.raw(ext), "write", {} }))))
        end
        assert.equal(1, write().result)
        local b = backend(redis)
        assert.is_true(await_endpoints(gw, { a.addr, b.addr }))
        -- deregistered as a clean stop does it, while a client holds a reference into it
        assert.equal("1", redis:cmd("DEL", "ghostgate:{calc}:ep:" .. a.addr))
        assert.equal("1", redis:cmd("SREM", "ghostgate:{calc}:eps", a.addr))
        redis:cmd("PUBLISH", "ghostgate:registry", "calc")
        assert.is_true(h.await(function()
            local e = endpoints(gw)[a.addr]
            return e and e.draining == true
        end, h.timeout(2)))
        assert.equal(2, write().result) -- the reference still works
        -- new calls go to b only (a has no echo: a call sent there would fail)
        assert.same({}, run_calls(c, function() return true end).failed)
        assert.equal(3, write().result)
        c:close() -- releases what the client held: then a's connections close
        assert.is_true(await_endpoints(gw, { b.addr }, h.timeout(3)))
    end)

    it("while Redis is down, calls flow on the last known table; /ready and /routes say stale", function()
        local redis = assert(h.start_redis())
        local a = backend(redis, 1)
        local gw = gateway(redis, 0.5)
        assert.is_true(await_endpoints(gw, { a.addr }))
        local c = assert(h.client(gw.addr))
        local port = redis.port
        assert(redis:kill())
        assert(gw:wait_log("registry_stale reason=", h.timeout(3)))
        local r = assert(http.get(gw.admin_url .. "/ready"))
        assert.equal(200, r.status)
        assert.matches("^registry stale since %d+%-%d+%-%d+T%d+:%d+:%d+Z: ", r.json.notes[1])
        assert.matches("^registry stale since ", routes(gw).registry)
        -- longer than the backend's TTL: the table is kept, calls flow
        local count = run_calls(c, function() return false end, nil)
        assert.same({}, count.failed)
        assert.is_true(count.ok > 0)
        redis = assert(h.start_redis({ port = port }))
        assert(gw:wait_log("registry_fresh stale_ms=%d+ suppressed=%d+", h.timeout(10)))
        assert.equal("fresh", routes(gw).registry)
        -- the heartbeat registered again; a new registration is followed
        assert.is_true(h.await(function()
            return redis:cmd("EXISTS", "ghostgate:{calc}:ep:" .. a.addr) == "1"
        end, h.timeout(3)))
        local b = backend(redis)
        assert.is_true(await_endpoints(gw, { a.addr, b.addr }, h.timeout(3)))
        assert.is_nil(assert(http.get(gw.admin_url .. "/ready")).json.notes)
    end)

    it("route and breaker policies see endpoints join and leave", function()
        local redis = assert(h.start_redis())
        local gw = http.start(config(redis, 5, { services = { calc = { discover = true,
            deadline = h.timeout(3), policies = { "breaker", "route" } } } }))
        local c = assert(h.client(gw.addr))
        local _, err = c:call("calc.echo", { 1 })
        assert.equal("no endpoint registered for service 'calc'", err.message)
        local a, b = backend(redis), backend(redis)
        assert.is_true(await_endpoints(gw, { a.addr, b.addr }))
        local count = run_calls(c, function() return calls_seen(a) > 0 and calls_seen(b) > 0 end)
        assert.same({}, count.failed)
        local eps = endpoints(gw)
        assert.equal("closed", eps[a.addr].breaker)
        assert.equal("closed", eps[b.addr].breaker)
        assert(a.reg:kill("sigterm"))
        assert.is_true(await_endpoints(gw, { b.addr }, h.timeout(2)))
        local before = calls_seen(a)
        count = run_calls(c, function() return true end)
        assert.same({}, count.failed)
        assert.equal(before, calls_seen(a))
        assert.is_nil(gw.proc:output():find("policy_error", 1, true))
    end)

    it("two gateways share one registry", function()
        local redis = assert(h.start_redis())
        local gw1, gw2 = gateway(redis), gateway(redis)
        local a = backend(redis)
        assert.is_true(await_endpoints(gw1, { a.addr }))
        assert.is_true(await_endpoints(gw2, { a.addr }))
        for _, gw in ipairs({ gw1, gw2 }) do
            local c = assert(h.client(gw.addr))
            assert.equal(7, (c:call("calc.add", { 3, 4 })))
        end
        assert(a.reg:kill("sigterm"))
        assert.is_true(await_endpoints(gw1, {}, h.timeout(2)))
        assert.is_true(await_endpoints(gw2, {}, h.timeout(2)))
    end)

    it("the periodic resync finds a registration whose hint was lost, and prunes expired members", function()
        local redis = assert(h.start_redis())
        local up = assert(h.start_upstream())
        local gw = gateway(redis, 0.3)
        -- by hand, without PUBLISH; and a member whose key never existed
        assert.equal("OK", redis:cmd("SET", "ghostgate:{calc}:ep:" .. up.addr, "by hand", "PX", 60000))
        assert.equal("1", redis:cmd("SADD", "ghostgate:{calc}:eps", up.addr))
        assert.equal("1", redis:cmd("SADD", "ghostgate:{calc}:eps", "tcp://127.0.0.1:1"))
        assert.is_true(await_endpoints(gw, { up.addr }, h.timeout(3)))
        assert.is_true(h.await(function()
            return redis:cmd("SISMEMBER", "ghostgate:{calc}:eps", "tcp://127.0.0.1:1") == "0"
        end, h.timeout(3)))
        local m = http.metrics(assert(http.get(gw.admin_url .. "/metrics")).body)
        local v = {}
        for _, s in ipairs(m) do
            v[s.name] = s.value
        end
        assert.is_true(v.ghostgate_registry_resyncs_total >= 1)
        assert.is_true(v.ghostgate_registry_pruned_total >= 1)
        assert.equal(0, v.ghostgate_registry_stale)
    end)

    it("reads everything again after the watch connection comes back", function()
        local redis = assert(h.start_redis())
        local up = assert(h.start_upstream())
        local gw = gateway(redis, 3600) -- no periodic resync within the spec
        -- the first read is done (fresh: read, and watching)
        assert.is_true(h.await(function() return routes(gw).registry == "fresh" end, h.timeout(3)))
        -- registered without the hint: only a full read can find it
        assert.equal("OK", redis:cmd("SET", "ghostgate:{calc}:ep:" .. up.addr, "by hand", "PX", 60000))
        assert.equal("1", redis:cmd("SADD", "ghostgate:{calc}:eps", up.addr))
        local n = #gw.proc.lines
        -- the watch, and the connection that hears the other gateways' breakers
        assert.equal("2", redis:cmd("CLIENT", "KILL", "TYPE", "pubsub"))
        assert(gw.proc:wait_line("redis_up name=discover%-watch", h.timeout(3), n + 1))
        assert.is_true(await_endpoints(gw, { up.addr }, h.timeout(3)))
    end)

    it("refuses an address it cannot use without a lookup, logged once", function()
        local redis = assert(h.start_redis())
        local gw = gateway(redis, 0.2)
        assert.equal("OK", redis:cmd("SET", "ghostgate:{calc}:ep:tcp://localhost:9", "x", "PX", 60000))
        assert.equal("1", redis:cmd("SADD", "ghostgate:{calc}:eps", "tcp://localhost:9"))
        assert.equal("1", redis:cmd("PUBLISH", "ghostgate:registry", "calc"))
        local line, at = gw:wait_log("registry_endpoint_refused service=calc upstream=\"tcp://localhost:9\"")
        assert(line, at)
        assert.matches('reason="a discovered endpoint is an IP address, not a host name"', line)
        -- a hostile member is logged escaped: it can neither end the line nor fake a key
        local evil = 'tcp://127.0.0.1:9"\nfake=1'
        assert.equal("OK", redis:cmd("SET", "ghostgate:{calc}:ep:" .. evil, "x", "PX", 60000))
        assert.equal("1", redis:cmd("SADD", "ghostgate:{calc}:eps", evil))
        assert(gw:wait_log('upstream="tcp://127%.0%.0%.1:9\\"\\nfake=1" '
            .. 'reason="bad address: 1 to 200 printable characters, no spaces"', h.timeout(3)))
        for _, l in ipairs(gw.proc.lines) do
            assert.is_nil(l:find("^fake=1"))
        end
        -- later resyncs do not repeat them
        local function resyncs()
            for _, smp in ipairs(http.metrics(assert(http.get(gw.admin_url .. "/metrics")).body)) do
                if smp.name == "ghostgate_registry_resyncs_total" then return smp.value end
            end
        end
        local function await_resyncs(n)
            local goal = resyncs() + n
            assert.is_true(h.await(function() return resyncs() >= goal end, h.timeout(5)))
        end
        await_resyncs(2) -- every line of the read that logged them has arrived
        local before = #gw.proc.lines
        await_resyncs(3)
        assert.is_nil(gw.proc:wait_line("registry_endpoint_refused", 0.01, before + 1))
        assert.same({}, endpoints(gw))
    end)

    it("a reload keeps the discovered table and its connections", function()
        local redis = assert(h.start_redis())
        local a = backend(redis)
        local gw = gateway(redis)
        assert.is_true(await_endpoints(gw, { a.addr }))
        local conns = assert(h.upstream_stats(a)).connections
        local n = #gw.proc.lines
        assert(uv.kill(gw.pid, "sighup"))
        assert(gw.proc:wait_line(" reloaded ", h.timeout(5), n + 1))
        local c = assert(h.client(gw.addr))
        assert.equal(7, (c:call("calc.add", { 3, 4 })))
        assert.is_true(await_endpoints(gw, { a.addr }, h.timeout(1)))
        assert.equal(conns, assert(h.upstream_stats(a)).connections)
    end)

    it("a reload to another Redis follows that registry", function()
        local r1, r2 = assert(h.start_redis()), assert(h.start_redis())
        local a, b = backend(r1), backend(r2)
        local gw = gateway(r1)
        assert.is_true(await_endpoints(gw, { a.addr }))
        local cfg = config(r2)
        cfg.listen, cfg.drain_timeout, cfg.http = "tcp://127.0.0.1:0", 2, nil
        cfg.admin = { listen = gw.admin }
        assert(h.write_file(gw.config_path, "return " .. h.serialize(cfg) .. "\n"))
        local n = #gw.proc.lines
        assert(uv.kill(gw.pid, "sighup"))
        assert(gw.proc:wait_line(" reloaded ", h.timeout(5), n + 1))
        assert.is_true(await_endpoints(gw, { b.addr }, h.timeout(3)))
        local c = assert(h.client(gw.addr))
        assert.same({}, run_calls(c, function() return true end).failed)
        assert.equal(0, calls_seen(a))
    end)

    it("a reload keeps the breakers' state of discovered endpoints", function()
        local redis = assert(h.start_redis())
        local a = backend(redis)
        local gw = http.start(config(redis, 5, { services = { calc = { discover = true, deadline = 0.3,
            policies = { { name = "breaker", failures = 1, cooldown = 60 } } } } }))
        assert.is_true(await_endpoints(gw, { a.addr }))
        local c = assert(h.client(gw.addr))
        local _, err = c:call("calc.hang", {})
        assert(h.is_error(err, 504, "deadline_exceeded"))
        assert.equal("open", endpoints(gw)[a.addr].breaker)
        local n = #gw.proc.lines
        assert(uv.kill(gw.pid, "sighup"))
        assert(gw.proc:wait_line(" reloaded ", h.timeout(5), n + 1))
        assert.equal("open", endpoints(gw)[a.addr].breaker)
        _, err = c:call("calc.echo", { 1 })
        assert(h.is_error(err, 530, "circuit_open"))
    end)

    it("ghostgate check refuses discover without redis, with upstreams, on jsonrpc-http or an adapter",
        function()
        local dir = h.tmpdir()
        local cases = {
            { [[return { services = { calc = { discover = true } } }]],
                "services%.calc: discover = true needs the top%-level redis option %(the registry%)" },
            { [[return { redis = "redis://127.0.0.1:1", services = { calc = { discover = true,
                upstream = "tcp://127.0.0.1:9" } } }]],
                "services%.calc: discover = true takes the endpoints from the registry: "
                    .. "remove upstream%(s%)" },
            { [[return { redis = "redis://127.0.0.1:1", services = { calc = { discover = true,
                protocol = "jsonrpc-http" } } }]],
                "services%.calc: discover = true needs protocol msgpack%-rpc" },
            { [[return { redis = "redis://127.0.0.1:1", services = { calc = { discover = true,
                adapter = "calc.lua" } } }]],
                "services%.calc: an adapter service cannot discover endpoints: it has none" },
            { [[return { redis = "redis://127.0.0.1:1", discover_resync = 0,
                services = { calc = { discover = true } } }]], "discover_resync" },
        }
        for i, case in ipairs(cases) do
            local path = assert(h.write_file(dir .. "/gw" .. i .. ".lua", case[1]))
            local r = assert(h.run(h.bin("ghostgate"), { "check", "-c", path }))
            assert.equal(1, r.code, r.output)
            assert.matches(case[2], r.stderr)
        end
        local ok = assert(h.write_file(dir .. "/ok.lua",
            [[return { redis = "redis://127.0.0.1:1", services = { calc = { discover = true } } }]]))
        local r = assert(h.run(h.bin("ghostgate"), { "check", "-c", ok }))
        assert.equal(0, r.code, r.output)
    end)
end)
