-- Remote objects through the gateway (docs/protocol.md, "Remote objects"; a service with
-- `objects = true`): references an upstream returns are rewritten to ids the gateway gives
-- each client, calls on them go back to the upstream connection that exported them, after
-- the service's policies with the object's method name. Real ghostgate, real backend.
local h = require "spec.support.helpers"
local http = require "spec.support.http"

local FILES = "spec/04-client/backends/files.lua"

-- [0, msgid, method, [<ext 65: id>, name, args]] on a raw connection; its response.
local function call_raw(c, method, id_bytes, name, args)
    local ext = "\199" .. string.char(#id_bytes) .. "\65" .. id_bytes
    local params = { h.mp.raw(ext), name }
    if args then params[3] = args end
    return c:wait_response(assert(c:request(method, params)))
end

describe("Remote objects through the gateway", function()
    local ghost, gw, f

    local function setup(svc, opts)
        svc.script = FILES
        f = h.setup_ghost({ files = svc }, opts)
        ghost, gw = f.ghost, f.gw
    end

    after_each(h.cleanup)

    it("routes calls on a backend's object to the upstream connection that exported it", function()
        setup({ objects = true, connections = 4 })
        local files = {}
        for i = 1, 8 do files[i] = gw.files.open("f" .. i .. ".txt") end
        for i = 1, 8 do
            assert.is_true(ghost.is_remote(files[i]))
            for _ = 1, i do files[i]:write("x") end
        end
        for i = 1, 8 do
            assert.equal(i, files[i]:count())
            assert.equal("f" .. i .. ".txt", files[i].name) -- $get
        end
    end)

    it("gives each client its own unguessable ids: forged and foreign ids get 410 and nothing runs",
        function()
        setup({ objects = true })
        local c = assert(h.client(f.gateway.addr))
        local r = assert(c:wait_response(assert(c:request("files.open", { "a.txt" }))))
        assert.is_nil(r.error)
        -- c7 LEN 40 | 92 <id> 93 a5 "count" a4 "slow" a5 "write": the id is not the backend's 1
        local id = r.raw_result:match("^\199.\064\146(.+)\147\165count\164slow\165write$")
        assert.is_not_nil(id)
        assert.are_not.equal("\1", id)
        r = assert(call_raw(c, "$call", id, "write", { "hello" }))
        assert.is_nil(r.error)
        assert.equal(1, r.result)
        local other = assert(h.client(f.gateway.addr))
        for _, pair in ipairs({ { other, id }, { c, "\1" }, { c, "\205\3\231" } }) do
            r = assert(call_raw(pair[1], "$call", pair[2], "write", { "forged" }))
            assert.same({ 410, "object_gone" }, { r.error.code, r.error.type })
            assert.matches("^no object %d+ on this connection$", r.error.message)
        end
        r = assert(call_raw(c, "$call", id, "count", {}))
        assert.equal(1, r.result)
    end)

    it("refuses '_' names with 403 before anything is routed", function()
        setup({ objects = true })
        local file = gw.files.open("a.txt")
        local ok, err = pcall(function() return file._secret end)
        assert.is_false(ok)
        assert.same({ 403, "forbidden", "attribute '_secret' is private" },
            { err.code, err.type, err.message })
        local c = assert(h.client(f.gateway.addr))
        local r = assert(c:wait_response(assert(c:request("files.open", { "b.txt" }))))
        local id = r.raw_result:match("^\199.\064\146(.+)\147")
        r = assert(call_raw(c, "$call", id, "_wipe", {}))
        assert.same({ 403, "forbidden", "method '_wipe' is private" },
            { r.error.code, r.error.type, r.error.message })
    end)

    it("runs the service's guard on the object's method name", function()
        ghost = h.ghost()
        local b = assert(h.start_backend(FILES, { "tcp://127.0.0.1:0" }, { name = "files" }))
        local gateway = assert(h.start_gateway(([[
            return { listen = "tcp://127.0.0.1:0", drain_timeout = 2, services = {
                files = { upstream = %q, objects = true,
                          policies = { guard { allow = { "open", "count" } } } } } }
        ]]):format(b.addr)))
        gw = h.ghost_connect(gateway.addr)
        local file = gw.files.open("a.txt")
        assert.equal(0, file:count())
        local ok, err = pcall(function() return file:write("no") end)
        assert.is_false(ok)
        assert.same({ 403, "forbidden" }, { err.code, err.type })
        assert.equal(0, file:count())
    end)

    it("makes every reference into an upstream connection that died fail with 410 object_gone",
        function()
        setup({ objects = true })
        local file = gw.files.open("a.txt")
        assert.equal(0, file:count())
        local b = f.backends.files
        b.proc.strict = false
        b:kill("sigkill")
        assert(b:wait_exit(h.timeout(5)))
        local ok, err
        local deadline = ghost.now() + h.timeout(5)
        repeat -- the gateway learns of the death when the socket closes
            ok, err = pcall(function() return file:count() end)
            if ok or err.code ~= 410 then ghost.sleep(0.02) end
        until (not ok and err.code == 410) or ghost.now() > deadline
        assert.same({ 410, "object_gone" }, { err.code, err.type })
        assert.matches("its upstream connection closed", err.message)
    end)

    -- Poll the backend's count of live exports (a plain call) until it is `n`.
    local function live_becomes(n)
        local deadline = ghost.now() + h.timeout(5)
        local live
        repeat
            collectgarbage()
            collectgarbage()
            live = gw.files.live()
            if live ~= n then ghost.sleep(0.02) end
        until live == n or ghost.now() > deadline
        return live
    end

    it("releases a reference upstream once no client holds it ($release batched per turn)", function()
        setup({ objects = true })
        local start = gw.files.live()
        local held = {}
        for i = 1, 20 do held[i] = gw.files.open("f" .. i) end
        assert.equal(start + 20, gw.files.live())
        for i = 1, 10 do held[i] = nil end
        assert.equal(start + 10, live_becomes(start + 10))
        assert.equal(0, held[20]:count()) -- the others still work
        held = nil -- luacheck: ignore 311
        assert.equal(start, live_becomes(start))
    end)

    it("releases everything a client held when it disconnects", function()
        setup({ objects = true })
        local start = gw.files.live()
        local c = assert(h.client(f.gateway.addr))
        for i = 1, 100 do assert(c:request("files.open", { "f" .. i })) end
        for i = 1, 100 do assert.is_nil(assert(c:wait_response(i)).error) end
        assert.equal(start + 100, gw.files.live())
        c:close()
        assert.equal(start, live_becomes(start))
    end)

    it("ignores releases of ids the client does not hold: another client's objects stay", function()
        setup({ objects = true })
        local file = gw.files.open("mine")
        local start = gw.files.live()
        local c = assert(h.client(f.gateway.addr))
        for _, id in ipairs({ 1, 2, 12345 }) do assert(c:notify("$release", { { { id, 5 } } })) end
        local r = assert(c:wait_response(assert(c:request("files.live", {}))))
        assert.equal(start, r.result)
        assert.equal(0, file:count())
    end)

    it("refuses an answer that would pass limits.max_refs_per_client with 503, releasing its references",
        function()
        setup({ objects = true }, { config = { limits = { max_refs_per_client = 5 } } })
        local start = gw.files.live()
        local ok, err = pcall(function() return gw.files.many(10) end)
        assert.is_false(ok)
        assert.same({ 503, "overloaded",
            "the connection holds limits.max_refs_per_client references already" },
            { err.code, err.type, err.message })
        assert.equal(start, live_becomes(start))
        local four = gw.files.many(4) -- under the limit (nothing was kept of the refused answer)
        assert.equal(4, four[4]:id())
    end)

    it("counts live references per service and side in /metrics", function()
        setup({ objects = true }, { config = { admin = { listen = "127.0.0.1:0" } } })
        local admin = assert(f.gateway:wait_log("http_listening kind=admin ", h.timeout(2)))
        admin = "http://" .. admin:match("listen=tcp://(%S+)")
        local function refs()
            local m = http.metrics(assert(http.get(admin .. "/metrics")).body)
            return { http.sample(m, "ghostgate_object_refs", { service = "files", side = "upstream" }),
                     http.sample(m, "ghostgate_object_refs", { service = "files", side = "client" }) }
        end
        assert.same({ 0, 0 }, refs())
        local start = gw.files.live()
        local held = { -- luacheck: ignore 231
            gw.files.open("a"), gw.files.open("b"), gw.files.shared() }
        local c = assert(h.client(f.gateway.addr))
        assert.is_nil(assert(c:wait_response(assert(c:request("files.shared", {})))).error)
        -- three objects upstream; four references: the shared one is held by both clients
        assert.same({ 3, 4 }, refs())
        c:close()
        held = nil -- luacheck: ignore 311
        assert.equal(start, live_becomes(start))
        assert.same({ 0, 0 }, refs())
    end)

    it("refuses references in a plain call's params with 501: no client can name another's object",
        function()
        setup({ objects = true })
        local mine = gw.files.open("mine")
        assert.equal(1, mine:write("x"))
        local c = assert(h.client(f.gateway.addr))
        -- files.publish(<ext 65: 1>): the backend's own id of the object the first client holds
        local r = assert(c:wait_response(assert(c:request("files.publish", { h.mp.raw("\212\65\1") }))))
        assert.same({ 501, "not_supported" }, { r.error.code, r.error.type })
        assert.matches("not supported through the gateway", r.error.message)
        assert.equal(1, mine:count())
    end)

    it("answers malformed $ requests with a clear error and keeps the connection", function()
        setup({ objects = true })
        local c = assert(h.client(f.gateway.addr))
        local r = assert(c:wait_response(assert(c:request("$call", { 1, "count", {} }))))
        assert.same({ 400, "bad_request",
            "$call params are [target, method, ...] with a reference the gateway gave" },
            { r.error.code, r.error.type, r.error.message })
        r = assert(c:wait_response(assert(c:request("$get", {}))))
        assert.same({ 400, "bad_request",
            "$get params are [target, key, ...] with a reference the gateway gave" },
            { r.error.code, r.error.type, r.error.message })
        r = assert(c:wait_response(assert(c:request("$drop", {}))))
        assert.same({ 404, "no_such_service" }, { r.error.code, r.error.type })
        assert(c:notify("$release", { "not pairs" }))
        r = assert(c:wait_response(assert(c:request("files.live", {}))))
        assert.is_nil(r.error)
        assert(f.gateway:wait_log('notification_dropped service=%- method="%$release" reason=bad_request'))
    end)

    it("leaves results alone for a service without objects = true (no scan, no rewrite)", function()
        setup({})
        local c = assert(h.client(f.gateway.addr))
        local r = assert(c:wait_response(assert(c:request("files.open", { "a.txt" }))))
        assert.equal("\199\020\064\146\001\147\165count\164slow\165write", r.raw_result)
        r = assert(call_raw(c, "$call", "\1", "count", {}))
        assert.same({ 410, "object_gone" }, { r.error.code, r.error.type })
    end)
end)
