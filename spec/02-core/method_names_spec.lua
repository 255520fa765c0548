-- Safe method names: before any policy, for every service, the gateway refuses a method name
-- with a segment starting with '_' (403 forbidden: private by convention, like _x and __gc), an
-- empty segment, a control character or invalid UTF-8 (400 bad_request). Requests,
-- notifications and JSON-RPC over HTTP alike; the gateway's own sys.* and ghost.* too. A
-- service opts out with method_names = "any". See docs/protocol.md, Method names and routing.
local h = require "spec.support.helpers"
local http = require "spec.support.http"

local PRIVATE = "method is not public (a name segment starts with '_')"
local EMPTY = "method name has an empty segment"
local CONTROL = "method name contains a control character"
local UTF8 = "method name is not valid UTF-8"

local function err_of(code, typ, message)
    return { code = code, type = typ, message = message }
end

-- The last notification the demo upstream received, once it is `method`.
local function await_notification(c, method)
    return h.retry(function()
        local v = c:call("demo.last_notification", {})
        return type(v) == "table" and v[1] == method and v, "no notification " .. method .. " yet"
    end, h.timeout(3), 0.02)
end

describe("Method names", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("with a segment starting with '_' are refused with 403 forbidden, never sent upstream", function()
        local d = h.setup_demo()
        for _, name in ipairs({ "demo._private", "demo.__gc", "demo.a._b", "_demo.echo", "sys._x" }) do
            local _, err = d.c:call(name, { 1 })
            assert.same(err_of(403, "forbidden", PRIVATE), err, name)
        end
        -- a '_' inside a segment is an ordinary character
        local _, err = d.c:call("demo.get_x", {})
        assert.same(err_of(404, "no_such_method", "no such method 'get_x'"), err)
        local s = assert(h.upstream_stats(d.up))
        assert.equal(1, s.calls - d.up.stats_calls)
        assert.is_false(d.c.closed)
    end)

    it("with an empty segment, a control character or invalid UTF-8 get 400 bad_request", function()
        local d = h.setup_demo()
        local cases = {
            { "demo.a..b", EMPTY }, { "demo.", EMPTY }, { "demo.a.", EMPTY }, { ".demo.echo", EMPTY },
            { "demo.x\0y", CONTROL }, { "demo.x\ny", CONTROL }, { "demo.\127", CONTROL },
            { "demo.\194\133", CONTROL }, -- U+0085, a C1 control (next line)
            { "demo.\255", UTF8 }, { "demo.caf\233", UTF8 }, { "demo.\192\174", UTF8 }, -- overlong '.'
            { "demo.\237\160\128", UTF8 }, -- a UTF-16 surrogate
            { "demo._x\n", CONTROL }, -- the worst flaw is the one reported
        }
        for _, case in ipairs(cases) do
            local _, err = d.c:call(case[1], {})
            assert.same(err_of(400, "bad_request", case[2]), err, case[1])
        end
        -- valid UTF-8 is a name like any other: forwarded
        local _, err = d.c:call("demo.caf\195\169", {})
        assert.same(err_of(404, "no_such_method", "no such method 'caf\195\169'"), err)
        assert.is_false(d.c.closed)
        assert(d.gw:wait_log("method_refused .*reason=\"method name is not valid UTF%-8\"", h.timeout(3)))
    end)

    it("are checked for notifications too: a refused one is dropped and logged at warn", function()
        local d = h.setup_demo()
        assert(d.c:notify("demo._ping", { 1 }))
        assert(d.c:notify("demo.a..b", { 2 }))
        assert(d.c:notify("demo.ping", { 3 }))
        assert.same({ "ping", { 3 } }, assert(await_notification(d.c, "ping")))
        local s = assert(h.upstream_stats(d.up))
        assert.equal(1, s.notifications)
        assert(d.gw:wait_log('notification_dropped service=demo method="demo._ping" reason=forbidden why=',
            h.timeout(3)))
        assert(d.gw:wait_log('notification_dropped service=demo method="demo.a..b" reason=bad_request why=',
            h.timeout(3)))
    end)

    it("are forwarded as they are by a service with method_names = \"any\"", function()
        local up = assert(h.start_upstream())
        local gw = assert(h.start_gateway({
            services = {
                legacy = { upstream = up.addr, method_names = "any" },
                strict = { upstream = up.addr },
            },
        }))
        local c = assert(h.client(gw.addr))
        local _, err = c:call("legacy._private", {})
        assert.same(err_of(404, "no_such_method", "no such method '_private'"), err)
        _, err = c:call("legacy.a..b", {})
        assert.same(err_of(404, "no_such_method", "no such method 'a..b'"), err)
        assert.equal("x", c:call("legacy.echo", { "x" }))
        -- the option is per service
        _, err = c:call("strict._private", {})
        assert.same(err_of(403, "forbidden", PRIVATE), err)
    end)

    it("are checked over JSON-RPC over HTTP, requests and notifications", function()
        local up = assert(h.start_upstream())
        local gw = http.start(h.demo_config(up))
        local r = assert(http.rpc(gw, {
            http.req(1, "demo._private", {}),
            http.req(2, "demo.a\nb", {}),
            { jsonrpc = "2.0", method = "demo.__gc", params = {} },
            http.req(3, "demo.echo", { "ok" }),
        }))
        assert.same({ code = -32003, message = PRIVATE, data = { code = 403, type = "forbidden" } },
            r.json[1].error)
        assert.same({ code = -32600, message = CONTROL, data = { code = 400, type = "bad_request" } },
            r.json[2].error)
        assert.equal("ok", r.json[3].result)
        assert(gw:wait_log("warn notification_dropped service=demo method=\"demo.__gc\" "
            .. "reason=forbidden why=",
            h.timeout(3)))
        local s = assert(h.upstream_stats(up))
        assert.equal(1, s.calls - up.stats_calls)
        assert.equal(0, s.notifications)
    end)

    it("method_names is validated by ghostgate check", function()
        local path = h.tmpdir() .. "/config.lua"
        assert(h.write_file(path, [[
return { services = { demo = { upstream = "tcp://127.0.0.1:1", method_names = "all" } } }]]))
        local r = assert(h.run(h.bin("ghostgate"), { "check", "-c", path }, { timeout = h.timeout(10) }))
        assert.equal(1, r.code, r.output)
        assert.matches("method_names", r.stderr, 1, true)
        assert.matches("public", r.stderr, 1, true)
    end)
end)
