-- Promise pipelining through the gateway (docs/protocol.md, "Promise pipelining" and "Through
-- the gateway"): a call made with `keep` goes to one upstream connection, calls on its promise
-- follow it there rewritten to the gateway's msgid, and the backend runs them when the first
-- answer is ready. Real ghostgate, real ghost.serve backend, a real slow link.
local h = require "spec.support.helpers"

local FILES = "spec/04-client/backends/files.lua"

-- A PROMISE ext value [msgid, []] (ext 66), as raw bytes for h.mp.raw.
local function promise_ext(msgid)
    local payload = "\146" .. h.mp.encode(msgid) .. "\144"
    return h.mp.raw("\199" .. string.char(#payload) .. "\66" .. payload)
end

describe("Promise pipelining through the gateway", function()
    local ghost, gw, f

    local function setup(svc, opts)
        svc.script = FILES
        f = h.setup_ghost({ files = svc }, opts)
        ghost, gw = f.ghost, f.gw
    end

    after_each(h.cleanup)

    it("runs a call on a promise in one round trip through a slow link", function()
        setup({ objects = true })
        local relay = h.delay_relay(f.gateway.addr, 0.1) -- 100 ms each way
        local r = assert(h.run_lua([[
            local ghost = require "ghost"
            local gw = assert(ghost.connect(arg[1], { timeout = 10 }))
            assert(gw.files.open("warm.txt"):count() == 0) -- the link is up
            local t0 = ghost.now()
            local n = gw.files.open:promise("b.txt"):count()
            local one = ghost.now() - t0
            t0 = ghost.now()
            local m = gw.files.open("c.txt"):count()
            local two = ghost.now() - t0
            print(string.format("pipelined=%d in=%.3f plain=%d in=%.3f", n, one, m, two))
        ]], { relay.addr }, { timeout = h.timeout(20) }))
        assert.equal(0, r.code, r.output)
        local n, one, m, two = r.stdout:match("pipelined=(%d+) in=([%d.]+) plain=(%d+) in=([%d.]+)")
        assert.equal("0", n, r.output)
        assert.equal("0", m)
        one, two = tonumber(one), tonumber(two)
        assert.is_true(one >= 0.2 and one < 0.4 * h.scale, "pipelined took " .. one .. " s")
        assert.is_true(two >= 0.4, "two round trips took " .. two .. " s")
    end)

    it("works as peer to peer: a promise's methods, wait, and calls after its answer", function()
        setup({ objects = true, connections = 4 })
        assert.equal(0, gw.files.open:promise("b.txt"):count())
        local p = gw.files.open:promise("c.txt")
        assert.equal(1, p:write("x"))
        assert.equal(2, p:write("y"))
        local file = p:wait()
        assert.is_true(ghost.is_remote(file))
        assert.equal(2, file:count())
        assert.equal(3, p:write("z")) -- the answer is in: still the same object, same connection
        assert.equal(3, file:count())
    end)

    it("pipelines on a kept call of an object's method: a result that is no object gets 400", function()
        setup({ objects = true })
        local file = gw.files.open("a.txt")
        local p = ghost.promise(file, "count")
        assert.same({ 400, "bad_request", "the promised result is not an object" },
            h.raised(function() return p:write("x") end))
        assert.equal(0, p:wait())
    end)

    it("fails calls on a promise with the promised call's error", function()
        setup({ objects = true })
        local p = gw.files.open:promise("")
        assert.same({ 422, "bad_name", "a file needs a name" }, h.raised(function() return p:count() end))
        local e = h.raised(function() return p:wait() end)
        assert.same({ 422, "bad_name" }, { e[1], e[2] })
    end)

    it("forwards $finish to the upstream, and a finished or never kept call gets 410", function()
        setup({ objects = true })
        local c = assert(h.client(f.gateway.addr))
        local id = assert(c:request("$call", { h.mp.null, "files.open", { "b.txt" }, true }))
        local r = assert(c:wait_response(assert(c:request("$call", { promise_ext(id), "write", { "x" } }))))
        assert.is_nil(r.error)
        assert.equal(1, r.result)
        r = assert(c:wait_response(id))
        assert.is_nil(r.error)
        assert.equal(1, gw.files.kept())
        assert.equal(1, c:call("$call", { promise_ext(id), "count", {} }))
        c:notify("$finish", { id })
        assert.is_true(h.await(function() return gw.files.kept() == 0 end, h.timeout(5)))
        for _, msgid in ipairs({ id, 4242 }) do
            local _, e = c:call("$call", { promise_ext(msgid), "count", {} })
            assert.same({ 410, "object_gone",
                ("no call %d kept for pipelining on this connection"):format(msgid) },
                { e.code, e.type, e.message })
        end
    end)

    it("answers 410 for calls on a promise whose upstream connection died", function()
        setup({ objects = true })
        local c = assert(h.client(f.gateway.addr))
        local id = assert(c:request("$call", { h.mp.null, "files.open", { "b.txt" }, true }))
        assert.is_nil(assert(c:wait_response(id)).error)
        local b = f.backends.files
        b.proc.strict = false
        b:kill("sigkill")
        assert(b:wait_exit(h.timeout(5)))
        local err = assert(h.retry(function() -- until the gateway has seen the socket close
            local _, e = c:call("$call", { promise_ext(id), "count", {} })
            return e and e.code == 410 and e, e
        end, h.timeout(5)))
        assert.same({ 410, "object_gone", ("call %d is gone: its upstream connection closed"):format(id) },
            { err.code, err.type, err.message })
        c:notify("$finish", { id }) -- forgets the record; nothing to tell a closed connection
        local _, e = c:call("$call", { promise_ext(id), "count", {} })
        assert.equal(("no call %d kept for pipelining on this connection"):format(id), e.message)
    end)

    it("tells the upstream $finish for every call a client kept when it disconnects", function()
        setup({ objects = true })
        local c = assert(h.client(f.gateway.addr))
        local ids = {}
        for i = 1, 3 do
            ids[i] = assert(c:request("$call", { h.mp.null, "files.open", { "f" .. i }, true }))
        end
        assert(c:wait_all(ids))
        assert.equal(3, gw.files.kept())
        c:close()
        assert.is_true(h.await(function() return gw.files.kept() == 0 end, h.timeout(5)))
    end)

    it("counts kept calls against limits.max_kept_per_client", function()
        setup({ objects = true }, { config = { limits = { max_kept_per_client = 2 } } })
        local c = assert(h.client(f.gateway.addr))
        local function open(keep)
            local id = assert(c:request("$call", { h.mp.null, "files.open", { "a" }, keep }))
            return assert(c:wait_response(id))
        end
        assert.is_nil(open(true).error)
        assert.is_nil(open(true).error)
        local e = open(true).error
        assert.same({ 503, "overloaded",
            "the connection keeps limits.max_kept_per_client answers already ($finish some)" },
            { e.code, e.type, e.message })
        assert.is_nil(open(false).error) -- without keep: no limit
        assert.equal(2, gw.files.kept())
    end)

    it("refuses pipelining on a service with objects = false with 501 and the reason", function()
        setup({ objects = false })
        local p = gw.files.open:promise("b.txt")
        local e = h.raised(function() return p:wait() end)
        assert.same({ 501, "not_supported", "service 'files' does not route remote objects "
            .. "(objects = false): no $call or promise pipelining" }, e)
        assert.same(e, h.raised(function() return p:count() end))
        assert.equal(0, gw.files.kept())
    end)

    it("answers calls on a promise the gateway's policies refused with the same error", function()
        ghost = h.ghost()
        local b = assert(h.start_backend(FILES, { "tcp://127.0.0.1:0" }, { name = "files" }))
        local gateway = assert(h.start_gateway(([[
            return { listen = "tcp://127.0.0.1:0", drain_timeout = 2, services = {
                files = { upstream = %q, objects = true,
                          policies = { guard { allow = { "count", "kept" } } } } } }
        ]]):format(b.addr)))
        gw = h.ghost_connect(gateway.addr)
        local p = gw.files.open:promise("b.txt")
        local e = h.raised(function() return p:wait() end)
        assert.same({ 403, "forbidden" }, { e[1], e[2] })
        assert.same(e, h.raised(function() return p:count() end))
        assert.equal(0, gw.files.kept())
    end)
end)
