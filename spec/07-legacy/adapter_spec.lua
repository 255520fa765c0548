-- Lua adapters: a service implemented by a Lua file inside the gateway. Each call runs in its
-- own coroutine; http.request (a REST service) and upstream.call (any service of the gateway,
-- its policies applying) wait on the gateway's loop. The adapter's own policies (guard,
-- ratelimit, breaker) apply to it like to any service. Real processes: the gateway, the example
-- REST service, the JSON-RPC test upstream, ghost-upstream.
local h = require "spec.support.helpers"
local legacy = require "spec.support.legacy"
local e2e = require "spec.support.policy_e2e"
local uv = require "luv"
local mp = h.mp

local CALC = "spec/07-legacy/adapters/calc_adapter.lua"
local USERS = "deploy/examples/users_adapter.lua"
local KEY = "adapter-key-0123456789"

local function abs(p) return uv.cwd() .. "/" .. p end

-- The JSON-RPC upstream (service `legacy`, guarded), ghost-upstream (`demo`, and `secure`
-- behind auth), the REST users service behind users_adapter.lua (`users`) and the calc adapter.
local function setup(extra, top)
    local up = legacy.jsonrpc()
    local demo = assert(h.start_upstream())
    local rest = legacy.users()
    local services = {
        legacy = { protocol = "jsonrpc-http", upstream = up.url, deadline = 5,
                   policies = { { name = "guard", allow = { "add", "fail", "http500", "slow" } } } },
        demo = { upstream = demo.addr, deadline = 5 },
        secure = { upstream = demo.addr, deadline = 5, policies = { { name = "auth" } } },
        calc = { adapter = abs(CALC), deadline = 2 },
        users = { adapter = abs(USERS), deadline = 2 },
    }
    for k, v in pairs(extra or {}) do services[k] = v end
    local cfg = { auth = { keys = { [KEY] = { identity = "ci", scopes = { "secure.*", "calc.*" } } } } }
    for k, v in pairs(top or {}) do cfg[k] = v end
    local gw = legacy.gateway(services, cfg, { env = { USERS_URL = rest.base } })
    return { up = up, demo = demo, rest = rest, gw = gw, c = assert(h.client(gw.addr)) }
end

describe("A Lua adapter", function()
    after_each(h.cleanup)

    it("fronts a REST service: users.get(id) and users.create(t)", function()
        local f = setup()
        local ada = { id = 1, name = "Ada Lovelace", email = "ada@example.org" }
        assert.same(ada, f.c:call("users.get", { 1 }))
        local u = assert(f.c:call("users.create", { { name = "Grace Hopper", email = "grace@example.org" } }))
        assert.same({ id = 2, name = "Grace Hopper", email = "grace@example.org" }, u)
        assert.same(u, f.c:call("users.get", { 2 }))
        local _, err = f.c:call("users.get", { 99 })
        assert.equal(404, err.code)
        assert.equal("not_found", err.type)
        assert.equal("no user 99", err.message)
        assert.is_nil(err.traceback) -- the service has no error_details
        _, err = f.c:call("users.create", { { email = "x@y" } })
        assert.same({ 400, "invalid_user", "a user needs a name" }, { err.code, err.type, err.message })
        _, err = f.c:call("users.get", { "one" })
        assert.same({ 400, "bad_request" }, { err.code, err.type })
    end)

    it("calls other services with upstream.call, through their policies", function()
        local f = setup()
        local c = f.c
        assert.equal(5, c:call("calc.add", { 2, 3 }))
        assert.same({ "x", 1, { y = true } }, { c:call("calc.echo", { "x" }), 1, { y = true } })
        assert.equal(55, c:call("calc.sum", { 10 }))
        -- try_call: nil, err with the upstream's error
        local r = assert(c:call("calc.try_fail", {}))
        assert.same({ code = -32000, type = "remote_error", message = "nope", method = "legacy.fail" }, r)
        -- an uncaught gateway error of the inner call ends the adapter's call with that error
        local _, err = c:call("calc.down", {})
        assert(h.is_error(err, 502, "upstream_unavailable"))
        assert.matches("^legacy%.http500: the upstream of service 'legacy' failed %(error id %x+",
            err.message)
        -- the target's guard applies
        _, err = c:call("calc.private_call", {})
        assert(h.is_error(err, 403, "forbidden"))
        assert.equal(0, legacy.count(f.up, "secret"))
    end)

    it("acts with the caller's identity: the target's auth policy sees who calls", function()
        local f = setup()
        local _, err = f.c:call("calc.whoami", {})
        assert(h.is_error(err, 401, "unauthenticated"))
        assert.same({ identity = "ci" }, f.c:call("ghost.auth", { KEY }))
        assert.equal("hi", f.c:call("calc.whoami", {}))
    end)

    it("answers an adapter error with an id that is in the log, and the detail only there", function()
        local f = setup()
        local _, err = f.c:call("calc.boom", {})
        assert.equal(500, err.code)
        assert.equal("adapter_error", err.type)
        assert.matches("^%x%x%x%x%x%x%x%x$", err.id)
        assert.equal("adapter error (id " .. err.id .. "; see the gateway's log)", err.message)
        assert.is_nil(err.traceback)
        assert(e2e.await_lines(f.gw, "adapter_error id=" .. err.id
            .. " service=calc method=boom error=\".*calc_adapter.lua:%d+: attempt to index local 't'", 1))
        -- an error table with a type is the caller's to see as it is
        _, err = f.c:call("calc.raise_typed", {})
        assert.same({ 409, "conflict", "already there" }, { err.code, err.type, err.message })
        -- the adapter goes on serving
        assert.equal(5, f.c:call("calc.add", { 2, 3 }))
    end)

    it("exports only public names: unknown and private methods are no_such_method", function()
        -- method_names = "any": the gateway lets private names through to the adapter's own check
        local f = setup({ calc = { adapter = abs(CALC), deadline = 2, method_names = "any" } })
        for _, m in ipairs({ "nope", "_hidden", "nested", "__index" }) do
            local _, err = f.c:call("calc." .. m, {})
            assert.equal(404, err.code, m)
            assert.equal("no_such_method", err.type, m)
        end
        assert.equal("deep", f.c:call("calc.nested.deep", {}))
    end)

    it("keeps MessagePack bin and empty maps apart, and has the gateway's JSON mapping", function()
        local f = setup()
        local id = assert(f.c:request("calc.bin", { mp.bin("\0\1\255") }))
        local r = assert(f.c:wait_response(id))
        assert.is_nil(r.error)
        assert.same({ is_bin = true, len = 3, back = "\0\1\255" }, r.result)
        assert.truthy(r.raw_result:find("\196\3\0\1\255", 1, true)) -- still bin (bin8, 3 bytes)
        local j = assert(f.c:call("calc.json", { { a = { 1, 2 }, s = "x" } }))
        assert.same({ a = { 1, 2 }, s = "x" }, j.back)
        local d = assert(f.c:call("calc.decode", { "{not json" }))
        assert.is_nil(d[1])
        assert.matches("json.decode", d[2])
    end)

    it("has bin and map as ghost.core has them: bin of a bin is that bin, map() is a new empty map",
        function()
        local f = setup()
        local id = assert(f.c:request("calc.rebin", { mp.bin("\0\1") }))
        local r = assert(f.c:wait_response(id))
        assert.is_nil(r.error)
        assert.is_true(r.result.same)
        assert.equal("\0\1", r.result.back)
        assert.truthy(r.raw_result:find("\196\2\0\1", 1, true)) -- still bin (bin8, 2 bytes)
        assert.truthy(r.raw_result:find("\165empty\128", 1, true)) -- an empty map, not an array
    end)

    it("has http.request errors: refused (502), timeout (504), other schemes (not supported)", function()
        local f = setup()
        local hole = h.black_hole()
        local url = "http://127.0.0.1:" .. hole.port .. "/x"
        local t0 = h.now()
        local r = assert(f.c:call("calc.fetch", { url, 0.2 }))
        assert.same({ 504, "deadline_exceeded" }, { r.code, r.type })
        assert.is_true(h.now() - t0 < 1.5)
        hole.close()
        r = assert(f.c:call("calc.fetch", { "http://127.0.0.1:" .. h.unused_port() .. "/" }))
        assert.same({ 502, "upstream_unavailable" }, { r.code, r.type })
        assert.matches("connection refused", r.message)
        r = assert(f.c:call("calc.fetch", { "ftp://127.0.0.1/" }))
        assert.same({ 501, "not_supported" }, { r.code, r.type })
        r = assert(f.c:call("calc.fetch", { f.rest.base .. "/users/1" }))
        assert.equal(200, r.status)
        assert.equal("application/json", r.type)
        -- http.request and upstream.call only inside a call, not from a coroutine of one's own
        local _, err = f.c:call("calc.bad_yield", {})
        assert(h.is_error(err, 500, "adapter_error"))
        assert(e2e.await_lines(f.gw, "adapter_error id=" .. err.id .. " .*coroutine%.yield", 1))
    end)

    it("answers 504 at its deadline while it waits, and drops the late result", function()
        local f = setup({ calc = { adapter = abs(CALC), deadline = 0.3 } })
        local t0 = h.now()
        local _, err = f.c:call("calc.slow", { 0.8 }, 5)
        assert(h.is_error(err, 504, "deadline_exceeded"))
        assert.is_true(h.now() - t0 < 1)
        h.pause(0.8) -- the inner call ends meanwhile; its result has nowhere to go
        assert.equal(0, #f.c.duplicates)
        assert.equal(5, f.c:call("calc.add", { 2, 3 }))
        -- past its deadline a coroutine starts nothing more
        _, err = f.c:call("calc.after", { 0.5 }, 5)
        assert(h.is_error(err, 504, "deadline_exceeded"))
        local adds = legacy.count(f.up, "add")
        assert(h.await(function() return legacy.count(f.up, "slow") == 2 end))
        h.pause(0.5)
        assert.equal(adds, legacy.count(f.up, "add"))
    end)

    it("runs many calls at once, each in its own coroutine", function()
        local f = setup()
        local ids = {}
        for i = 1, 60 do
            if i % 3 == 0 then
                ids[i] = assert(f.c:request("users.get", { 1 }))
            elseif i % 3 == 1 then
                ids[i] = assert(f.c:request("calc.add", { i, 1 }))
            else
                ids[i] = assert(f.c:request("calc.slow", { 0.05 }))
            end
        end
        for i, r in ipairs(assert(f.c:wait_all(ids, h.timeout(10)))) do
            assert.is_nil(r.error)
            if i % 3 == 0 then assert.equal("Ada Lovelace", r.result.name) end
            if i % 3 == 1 then assert.equal(i + 1, r.result) end
            if i % 3 == 2 then assert.equal("late", r.result) end
        end
    end)

    it("runs under the service's guard and ratelimit", function()
        local f = setup({ users = { adapter = abs(USERS), deadline = 2, policies = {
            { name = "guard", allow = { "get" } },
            { name = "ratelimit", rate = 0.01, burst = 3, by = "address" },
        } } })
        local _, err = f.c:call("users.create", { { name = "x" } })
        assert(h.is_error(err, 403, "forbidden"))
        for _ = 1, 3 do assert.equal(1, f.c:call("users.get", { 1 }).id) end
        _, err = f.c:call("users.get", { 1 })
        assert(h.is_error(err, 429, "rate_limited"))
    end)

    it("meets notifications with its policies first; what they let through is not_supported", function()
        -- neither an adapter nor a jsonrpc-http upstream takes notifications (docs/legacy.md),
        -- but a refused one is refused as a call would be, before anything else
        local f = setup({ users = { adapter = abs(USERS), deadline = 2, policies = {
            { name = "guard", allow = { "get" } },
        } } })
        assert(f.c:notify("users.create", { { name = "x" } }))
        assert(f.c:notify("users.get", { 1 }))
        assert(f.c:notify("legacy._private", {}))
        assert(f.c:notify("legacy.add", { 1, 2 }))
        assert.equal("pong", f.c:call("ghost.ping", {}))
        local gw = f.gw
        assert(gw:wait_log('notification_dropped service=users method="users.create" reason=forbidden',
            h.timeout(2)))
        assert(gw:wait_log('notification_dropped service=users method="users.get" reason=not_supported',
            h.timeout(2)))
        assert(gw:wait_log('notification_dropped service=legacy method="legacy._private" reason=forbidden',
            h.timeout(2)))
        assert(gw:wait_log('notification_dropped service=legacy method="legacy.add" reason=not_supported',
            h.timeout(2)))
        assert.equal(0, legacy.count(f.up, "add"))
    end)

    it("runs under a breaker: failures it lets through count", function()
        local dead = "http://127.0.0.1:" .. h.unused_port() .. "/"
        local f = setup({ calc = { adapter = abs(CALC), deadline = 2, policies = {
            { name = "breaker", failures = 2, cooldown = 30 },
        } } })
        for _ = 1, 2 do
            local _, err = f.c:call("calc.must_fetch", { dead })
            assert(h.is_error(err, 502, "upstream_unavailable"))
        end
        local _, err = f.c:call("calc.must_fetch", { f.rest.base .. "/users/1" })
        assert(h.is_error(err, 530, "circuit_open"))
    end)

    it("is ended by the watchdog when a method never returns (the worker is replaced)", function()
        local path = legacy.adapter("return { spin = function() while true do end end, "
            .. "ping = function() return 'pong' end }", "spin_adapter.lua")
        local gw = assert(h.start_gateway({ workers = 2, watchdog = 0.5,
            services = { svc = { adapter = path, deadline = 5 } } }))
        local stuck = assert(h.client(gw.addr))
        assert(stuck:request("svc.spin", {}))
        assert(gw:wait_log("policy_stuck service=svc phase=adapter policy=[^ ]*spin_adapter.lua",
            h.timeout(5)))
        assert(stuck:wait_closed(h.timeout(5)))
        assert(gw:wait_log("worker_died worker=%d pid=%d+ status=70", h.timeout(5)))
        local c = assert(h.retry(function() return h.client(gw.addr) end))
        assert.equal("pong", c:call("svc.ping", {}))
    end)

    it("reconnects to a REST service that closes idle connections", function()
        local rest = legacy.script("deploy/examples/users_service.lua",
            { "--port", "0", "--idle-timeout", "0.2" })
        local gw = legacy.gateway({ users = { adapter = abs(USERS), deadline = 2 } }, nil,
            { env = { USERS_URL = rest.base } })
        local c = assert(h.client(gw.addr))
        for _ = 1, 3 do
            assert.equal(1, c:call("users.get", { 1 }).id)
            h.pause(0.4)
        end
    end)
end)

describe("A Lua adapter's values", function()
    after_each(h.cleanup)

    local function hex(s) return (s:gsub(".", function(x) return ("%02x"):format(x:byte()) end)) end

    -- The raw result of calc.same(v) for v given as MessagePack bytes.
    local function same(c, bytes)
        local id = assert(c:request("calc.same", { mp.raw(bytes) }))
        local r = assert(c:wait_response(id))
        assert.is_nil(r.error)
        return r.raw_result
    end

    it("keep nil inside arrays (start, middle, end) and maps: null, and back as nil", function()
        local f = setup()
        for _, want in ipairs({ "93c001c0", "92c0c0", "9301c0c0", "9491c0c09190c0", "81a161c0",
            "9181a16291c0" }) do
            local bytes = want:gsub("..", function(x) return string.char(tonumber(x, 16)) end)
            assert.equal(want, hex(same(f.c, bytes)))
        end
        -- {a: 1, b: [true, nil]}: a map of two, in either order
        local back = hex(same(f.c, "\130\161a\001\161b\146\195\192"))
        assert.is_true(back == "82a16101a16292c3c0" or back == "82a16292c3c0a16101", back)
        -- built with the `null` global; the gateway's JSON mapping has it as JSON null
        local id = assert(f.c:request("calc.nulls", {}))
        assert.equal("93c081a161c0c0", hex(assert(f.c:wait_response(id)).raw_result))
        local j = assert(f.c:call("calc.json", { { 1, mp.null, mp.map({ k = mp.null }) } }))
        assert.equal('[1,null,{"k":null}]', j.text)
        -- a nil argument is nil (not null): the adapter returns it as the result, nil
        id = assert(f.c:request("calc.same", { mp.null }))
        local r = assert(f.c:wait_response(id))
        assert.is_nil(r.error)
        assert.equal("c0", hex(r.raw_result))
    end)
end)

describe("A Lua adapter's decoding budget (limits.max_decode_values)", function()
    after_each(h.cleanup)

    it("refuses params over it with 413 too_large, before decoding them", function()
        local f = setup(nil, { limits = { max_decode_values = 1000 } })
        -- params [[[] x k]]: k + 2 values
        local function empties(k) return { mp.raw("\221" .. string.char(0, 0, math.floor(k / 256), k % 256)
            .. ("\144"):rep(k)) } end
        local r, e = f.c:call("calc.same", empties(998))
        assert.is_nil(e, e and e.message)
        assert.equal(998, #r)
        local _, err = f.c:call("calc.same", empties(999))
        assert.same({ 413, "too_large",
            "service 'calc': params have more than 1000 values (limits.max_decode_values)" },
            { err.code, err.type, err.message })
        -- the connection goes on
        assert.equal(5, f.c:call("calc.add", { 2, 3 }))
    end)

    it("refuses an upstream.call result over it: upstream_unavailable, nothing decoded", function()
        local f = setup(nil, { limits = { max_decode_values = 1000 } })
        -- the response [1, id, nil, [1 .. k]]: its error and result are k + 2 values
        assert.equal(998, f.c:call("calc.echo_ints", { 998 }))
        local _, err = f.c:call("calc.echo_ints", { 999 })
        assert.same({ 502, "upstream_unavailable",
            "demo.echo: the answer cannot be decoded: more than 1000 values (limits.max_decode_values)" },
            { err.code, err.type, err.message })
    end)

    it("is 100000 values by default: 2 MiB of empty arrays cost nothing", function()
        local f = setup()
        local k = 2 * 1024 * 1024
        local before = f.gw:rss_kb()
        local params = { mp.raw("\221" .. string.char(0, 32, 0, 0) .. ("\144"):rep(k)) }
        for _ = 1, 5 do
            local _, err = f.c:call("calc.same", params)
            assert.same({ 413, "too_large",
                "service 'calc': params have more than 100000 values (limits.max_decode_values)" },
                { err.code, err.type, err.message })
        end
        -- decoded, each would have been some 160 MB of Lua tables
        assert.is_true(f.gw:rss_kb() - before < 64 * 1024, "RSS grew")
    end)
end)

describe("Loading adapters", function()
    after_each(h.cleanup)

    local function start(source)
        local path = legacy.adapter(source, "svc_adapter.lua")
        local gw, err = h.start_gateway({ services = { svc = { adapter = path, deadline = 2 } } })
        return gw, err, path
    end

    it("refuses to start with an adapter that does not load, naming file and line", function()
        local cases = {
            { "local x = \nreturn {", "svc_adapter.lua:2:" },
            { "local t = {}\nerror('no config for me')\nreturn t", "svc_adapter.lua:2: no config for me" },
            { "return 42", "returns a table of functions, got number" },
            { "return { x = 1 }", "exports no public function" },
        }
        for _, case in ipairs(cases) do
            local gw, err = start(case[1])
            assert.is_nil(gw)
            assert.truthy(err:find(case[2], 1, true), err)
        end
        local gw, err = h.start_gateway({ services = { svc = { adapter = "/nonexistent/x.lua" } } })
        assert.is_nil(gw)
        assert.matches("services.svc.adapter: no adapter file /nonexistent/x.lua", err, 1, true)
    end)

    it("reloads a changed adapter file, and keeps the running one when the new one is broken", function()
        local gw, err, path = start("return { version = function() return 'v1' end }")
        assert(gw, err)
        local c = assert(h.client(gw.addr))
        assert.equal("v1", c:call("svc.version", {}))
        assert(h.write_file(path, "return { version = function() return 'v2' end }"))
        gw:kill("sighup")
        assert(gw:wait_log("reloaded"))
        assert.equal("v2", c:call("svc.version", {}))
        assert(h.write_file(path, "return { version = function() return 'v3' end"))
        gw:kill("sighup")
        local line = assert(gw:wait_log("reload_failed"))
        assert.matches("svc_adapter.lua:1:", line)
        assert.equal("v2", c:call("svc.version", {}))
    end)

    it("resolves a relative adapter path from the config file's directory", function()
        local dir = h.tmpdir()
        assert(h.write_file(dir .. "/rel_adapter.lua", "return { ping = function() return 'pong' end }"))
        local src = "return " .. h.serialize({ listen = "tcp://127.0.0.1:0", drain_timeout = 2,
            services = { rel = { adapter = "rel_adapter.lua" } } })
        local cfg = dir .. "/gateway.lua"
        assert(h.write_file(cfg, src))
        local proc = assert(h.spawn(h.bin("ghostgate"), { "serve", "-c", cfg, "--log-level", "info" },
            { name = "ghostgate", strict = true }))
        local line = assert(proc:wait_line("ready listen="))
        local c = assert(h.client(line:match("listen=(%S+)")))
        assert.equal("pong", c:call("rel.ping", {}))
    end)
end)
