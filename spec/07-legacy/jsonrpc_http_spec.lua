-- jsonrpc-http upstreams: a service whose upstream is a JSON-RPC 2.0 server over HTTP/1.1
-- (spec/support/jsonrpc_server.lua, a real process). Calls go out as POSTs on keep-alive
-- connections; results and JSON-RPC errors come back as MessagePack; what JSON cannot carry is
-- refused before anything is sent; every HTTP failure is a prompt 502 (or 504 at the deadline)
-- that breakers count.
local h = require "spec.support.helpers"
local legacy = require "spec.support.legacy"
local cjson = require "cjson.safe"
local mp = h.mp

local function setup(service, top)
    local up = legacy.jsonrpc()
    local svc = { protocol = "jsonrpc-http", upstream = up.url, deadline = 5 }
    for k, v in pairs(service or {}) do svc[k] = v end
    local gw = legacy.gateway({ legacy = svc }, top)
    return up, gw, assert(h.client(gw.addr))
end

describe("A jsonrpc-http service", function()
    after_each(h.cleanup)

    it("answers calls from the MessagePack client with the upstream's results", function()
        local _, _, c = setup()
        assert.equal(5, c:call("legacy.add", { 2, 3 }))
        assert.equal("h\195\169llo \226\156\147", c:call("legacy.echo", { "h\195\169llo \226\156\147" }))
        assert.same({ a = { 1, 2, { b = "x" } }, t = true, f = 1.5, n = -7 },
            c:call("legacy.echo", { { a = { 1, 2, { b = "x" } }, t = true, f = 1.5, n = -7 } }))
        local res, err = c:call("legacy.echo", {})
        assert.is_nil(err)
        assert.is_nil(res)
    end)

    it("sends JSON-RPC 2.0 POSTs to the URL's path with Host, Content-Type and configured headers", function()
        local up, _, c = setup({ headers = { ["X-Api-Key"] = "k-123", Authorization = "Bearer t" } })
        local r = assert(c:call("legacy.request", { 1, "two", { three = 3 } }))
        local req = assert(cjson.decode(r.body))
        assert.equal("2.0", req.jsonrpc)
        assert.equal("request", req.method)
        assert.same({ 1, "two", { three = 3 } }, req.params)
        assert.equal("number", type(req.id))
        assert.equal("application/json", r.headers["content-type"])
        assert.equal("127.0.0.1:" .. up.port, r.headers.host)
        assert.equal("k-123", r.headers["x-api-key"])
        assert.equal("Bearer t", r.headers.authorization)
        assert.equal(tostring(#r.body), r.headers["content-length"])
    end)

    it("passes a JSON-RPC error object through as the upstream's error", function()
        local _, _, c = setup()
        local _, err = c:call("legacy.fail", { "boom" })
        assert.same({ code = -32000, message = "boom", data = { detail = "from fail" } }, err)
        _, err = c:call("legacy.no_such", {})
        assert.same({ code = -32601, message = "Method not found" }, err)
        -- some servers send their errors with HTTP 500: still the upstream's error
        _, err = c:call("legacy.error500", { "as 500" })
        assert.same({ code = -32001, message = "as 500" }, err)
    end)

    it("maps JSON results to MessagePack exactly: int64, floats, unicode, empty array and object", function()
        local _, _, c = setup()
        local id = assert(c:request("legacy.literal",
            { '[9007199254740993, -9223372036854775808, 0.5, "\\u00e9\\u0000", [], {}, null]' }))
        local r = assert(c:wait_response(id))
        assert.is_nil(r.error)
        local want = mp.encode({ mp.uint64(0x00200000, 1), mp.int64(0x80000000, 0), 0.5, "\195\169\0",
            {}, mp.map({}), mp.null })
        assert.equal(mp.hex(want), mp.hex(r.raw_result))
    end)

    it("refuses what JSON cannot carry with 400 bad_request and sends nothing", function()
        local up, _, c = setup()
        local cases = {
            { mp.bin("\0\1\2") }, -- binary
            { mp.uint64(0x00200000, 1) }, -- 2^53 + 1
            { mp.int64(0xffdfffff, 0xffffffff) }, -- -(2^53) - 1
            { mp.raw("\214\5\1\2\3\4") }, -- ext
            { { nested = { mp.map({ [1] = "integer key" }) } } }, -- a map key that is not a string
            { 0 / 0 }, -- NaN
        }
        for i, params in ipairs(cases) do
            local id = assert(c:request("legacy.echo", params))
            local r = assert(c:wait_response(id))
            assert(h.is_error(r.error, 400, "bad_request"))
            assert.truthy(r.error.message:find("JSON", 1, true), "case " .. i .. ": " .. r.error.message)
        end
        local _, err = c:call("legacy.echo", { mp.bin("x") })
        assert.matches("params%[0%] is binary", err.message)
        _, err = c:call("legacy.echo", { { a = { mp.uint64(0x00200000, 1) } } })
        assert.matches("params%[0%]%.a%[0%] is the integer 9007199254740993, beyond 2%^53", err.message)
        -- the largest safe integer goes through, as written
        local r = assert(c:call("legacy.request", { mp.uint64(0x00200000, 0) }))
        assert.matches("%[9007199254740992%]", r.body)
        assert.equal(0, legacy.count(up, "echo"))
    end)

    it("answers 502 at once for HTTP 500, a body not JSON, a wrong id, a connection that dies", function()
        local _, gw, c = setup({ deadline = 10 })
        local cases = {
            http500 = "HTTP 500: internal error",
            garbage = "invalid JSON in the response",
            wrong_id = "does not match the request's",
            die = "closed the connection mid%-response",
        }
        for method, why in pairs(cases) do
            local t0 = h.now()
            local _, err = c:call("legacy." .. method, {}, 5)
            assert(h.is_error(err, 502, "upstream_unavailable"))
            -- the caller gets an id; the log has the URL and the reason under that id
            local id = err.message:match(
                "^the upstream of service 'legacy' failed %(error id (%x+); see the gateway's log%)$")
            assert.is_string(id, err.message)
            assert(gw:wait_log("upstream_http_error id=" .. id
                .. " service=legacy upstream=http://127%.0%.0%.1:%d+/rpc reason=.*" .. why, h.timeout(3)))
            assert.is_true(h.now() - t0 < 1, method .. " took " .. (h.now() - t0) .. " s")
            -- the pool is fine afterwards
            assert.equal(3, c:call("legacy.add", { 1, 2 }, 5))
        end
    end)

    it("answers 504 at the deadline for an upstream that hangs, and replaces the connection", function()
        local up, _, c = setup({ deadline = 0.3, connections = 1 })
        local t0 = h.now()
        local _, err = c:call("legacy.hang", {}, 5)
        local took = h.now() - t0
        assert(h.is_error(err, 504, "deadline_exceeded"))
        assert.is_true(took >= 0.25 and took < 1.5, "answered after " .. took .. " s")
        -- the only connection had a request in flight: it was closed and a new one opened
        assert.equal(7, c:call("legacy.add", { 3, 4 }, 5))
        assert.equal(2, legacy.rpc(up.url, "connections").result - 1) -- minus curl's own
    end)

    it("answers 502 promptly when the upstream is down, and recovers when it is back", function()
        local up, gw, c = setup({ deadline = 10 })
        up.proc:kill("sigkill")
        up.proc:wait_exit()
        local t0 = h.now()
        local _, err = c:call("legacy.add", { 1, 1 }, 5)
        assert(h.is_error(err, 502, "upstream_unavailable"))
        assert.is_true(h.now() - t0 < 1)
        -- a new upstream on the same port: the pool reconnects by itself
        local again = legacy.script("spec/support/jsonrpc_server.lua", { "--port", tostring(up.port) })
        assert(again)
        local res = h.retry(function() return c:call("legacy.add", { 2, 2 }, 2) end, h.timeout(10), 0.1)
        assert.equal(4, res)
        assert.truthy(gw)
    end)

    it("keeps connections alive: many calls reuse the pool", function()
        local up, _, c = setup({ connections = 2 })
        for i = 1, 30 do assert.equal(i + 1, c:call("legacy.add", { i, 1 })) end
        local ids = {}
        for i = 1, 20 do ids[i] = assert(c:request("legacy.slow", { 0.01, i })) end
        for i, r in ipairs(assert(c:wait_all(ids))) do assert.equal(i, r.result) end
        -- two pool connections, plus the one of this curl
        assert.equal(3, legacy.rpc(up.url, "connections").result)
    end)

    it("queues calls beyond the pool, one request per connection, within limits (then 503)", function()
        local up, gw = setup({ connections = 1 }, { limits = { max_inflight_per_client = 2 } })
        local c1, c2 = assert(h.client(gw.addr)), assert(h.client(gw.addr))
        -- one in flight on the only connection, two waiting: the queue is full
        local a = assert(c1:request("legacy.slow", { 0.5, "a" }))
        local b = assert(c1:request("legacy.slow", { 0.01, "b" }))
        assert(h.await(function() return legacy.count(up, "slow") == 1 end))
        local d = assert(c2:request("legacy.slow", { 0.01, "d" }))
        local e = assert(c2:request("legacy.slow", { 0.01, "e" }))
        local r = assert(c2:wait_response(e, 3))
        assert(h.is_error(r.error, 503, "overloaded"))
        assert.equal("a", assert(c1:wait_response(a, 3)).result)
        assert.equal("b", assert(c1:wait_response(b, 3)).result)
        assert.equal("d", assert(c2:wait_response(d, 3)).result)
        assert.equal(3, legacy.count(up, "slow"))
    end)

    it("counts HTTP failures for its breaker", function()
        local up, _, c = setup({ policies = { { name = "breaker", failures = 3, cooldown = 30 } } })
        for _ = 1, 3 do
            local _, err = c:call("legacy.http500", {})
            assert(h.is_error(err, 502, "upstream_unavailable"))
        end
        local _, err = c:call("legacy.add", { 1, 2 })
        assert(h.is_error(err, 530, "circuit_open"))
        assert.equal(3, legacy.count(up))
    end)

    it("does not count the upstream's own JSON-RPC errors for its breaker", function()
        local up, _, c = setup({ policies = { { name = "breaker", failures = 2, cooldown = 30 } } })
        for _ = 1, 4 do
            local _, err = c:call("legacy.fail", { "app" })
            assert.equal(-32000, err.code)
        end
        assert.equal(3, c:call("legacy.add", { 1, 2 }))
        assert.equal(5, legacy.count(up))
    end)

    it("takes a reload that changes the URL: new calls go to the new upstream", function()
        local up1, gw, c = setup()
        local up2 = legacy.jsonrpc()
        assert.equal(1, c:call("legacy.echo", { 1 }))
        local src = "return " .. h.serialize({
            listen = gw.addr, drain_timeout = 2,
            services = { legacy = { protocol = "jsonrpc-http", upstream = up2.url } },
        })
        assert(h.write_file(gw.config_path, src))
        gw:kill("sighup")
        assert(gw:wait_log("reloaded"))
        assert.equal(2, c:call("legacy.echo", { 2 }))
        assert.equal(1, legacy.count(up1, "echo"))
        assert.equal(1, legacy.count(up2, "echo"))
    end)

    it("is reachable from the Lua client library (ghost.connect)", function()
        local ok, ghost = pcall(h.ghost)
        if not ok then
            pending("the Lua client library is not built: " .. tostring(ghost))
            return
        end
        local _, gw = setup()
        local conn = assert(ghost.connect(gw.addr, { timeout = h.timeout(5) }))
        assert.equal(42, conn.legacy.add(40, 2))
        local okc, err = pcall(conn.legacy.fail, "from lua")
        assert.is_false(okc)
        assert.equal(-32000, err.code)
        assert.equal("from lua", err.message)
        conn:close()
    end)
end)

describe("jsonrpc-http config", function()
    after_each(h.cleanup)

    local function check(svc)
        local dir = h.tmpdir()
        local path = dir .. "/gateway.lua"
        assert(h.write_file(path, "return " .. h.serialize({ services = { legacy = svc } })))
        return assert(h.run(h.bin("ghostgate"), { "check", "-c", path }))
    end

    it("refuses headers that could split a request, and framing headers", function()
        local function with(headers)
            return { protocol = "jsonrpc-http", upstream = "http://127.0.0.1:1/rpc", headers = headers }
        end
        local r = check(with({ ["X-A"] = "a\r\nX-B: b" }))
        assert.equal(1, r.code)
        assert.matches("one line", r.stderr)
        r = check(with({ ["Content-Length"] = "1" }))
        assert.equal(1, r.code)
        assert.matches("set by the gateway", r.stderr)
        r = check(with({ ["Bad Name"] = "x" }))
        assert.equal(1, r.code)
        assert.matches("not an HTTP token", r.stderr)
        r = check(with({ ["X-Fine"] = "yes" }))
        assert.equal(0, r.code)
    end)

    it("refuses an upstream URL that does not fit the protocol", function()
        local r = check({ protocol = "jsonrpc-http", upstream = "tcp://127.0.0.1:1" })
        assert.equal(1, r.code)
        assert.matches("does not fit protocol jsonrpc%-http", r.stderr)
    end)
end)
