-- Calls through a ghost.connect() proxy look synchronous: at the top level a call runs the
-- loop until its answer arrives; in a task (ghost.spawn) it yields, so many calls are in
-- flight at once, pipelined on one connection. Errors are error objects; deadlines, cancel,
-- reconnect; MessagePack bin and str stay apart. Real gateway, real ghost.serve backend.
local h = require "spec.support.helpers"

local USERS = "spec/04-client/backends/users.lua"

-- Poll cond() while the ghost loop runs (ghost.sleep), up to timeout seconds.
local function ghost_await(ghost, cond, timeout)
    local deadline = ghost.now() + (timeout or h.timeout(5))
    while not cond() do
        if ghost.now() > deadline then return nil, "timeout" end
        ghost.sleep(0.02)
    end
    return true
end

-- Whether the local TCP socket on `port` is in CLOSE_WAIT: its peer has closed it.
local function close_wait(port)
    local want = ("%04X"):format(port)
    for line in (h.read_file("/proc/net/tcp") or ""):gmatch("[^\n]+") do
        local lport, st = line:match("^%s*%d+: %x+:(%x+) %x+:%x+ (%x%x)")
        if lport == want and st == "08" then return true end
    end
    return false
end

describe("Calls through ghost.connect", function()
    local ghost, gw, f

    before_each(function()
        f = h.setup_ghost({ users = { script = USERS, error_details = true } })
        ghost, gw = f.ghost, f.gw
    end)

    after_each(h.cleanup)

    it("pipelines 1,000 calls in flight on one connection: the backend holds each until all 1,000 arrived",
        function()
            local fns = {}
            for i = 1, 1000 do
                fns[i] = function() return gw.users.barrier(1000, i) end
            end
            local t0 = ghost.now()
            local results = ghost.all(fns)
            local elapsed = ghost.now() - t0
            assert.equal(1000, #results)
            for i = 1, 1000 do assert.equal(i, results[i]) end
            -- Serialized calls could never finish (each waits for all the others); pipelined
            -- ones take milliseconds.
            assert.is_true(elapsed < h.timeout(2), ("1,000 calls took %.3f s"):format(elapsed))
        end)

    it("answers 1,000 plain pipelined calls in milliseconds", function()
        local fns = {}
        for i = 1, 1000 do
            fns[i] = function() return gw.users.echo(i) end
        end
        ghost.all(fns) -- warm up pools
        local t0 = ghost.now()
        local results = ghost.all(fns)
        local elapsed = ghost.now() - t0
        assert.equal(1000, #results)
        assert.equal(1000, results[1000])
        assert.is_true(elapsed < h.timeout(1), ("1,000 calls took %.3f s"):format(elapsed))
    end)

    it("runs tasks at once: ghost.spawn starts work, ghost.all awaits it (10 calls of 0.3 s take ~0.3 s)",
        function()
            local t0 = ghost.now()
            local tasks = {}
            for i = 1, 10 do
                tasks[i] = ghost.spawn(function(n) return gw.users.sleep(0.3, n) end, i)
            end
            local results = ghost.all(tasks)
            local elapsed = ghost.now() - t0
            assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, results)
            assert.is_true(elapsed >= 0.29 and elapsed < 0.3 * 5, ("took %.3f s"):format(elapsed))
            assert.equal(7, tasks[7]:wait())
        end)

    it("raises an error object {code, type, message, traceback} with a readable tostring", function()
        local ok, err = pcall(gw.users.fail, "boom")
        assert.is_false(ok)
        assert.is_true(ghost.is_error(err))
        assert.equal(500, err.code)
        assert.equal("runtime_error", err.type)
        assert.matches("users.lua:%d+: boom$", err.message)
        assert.equal("users.fail", err.method)
        -- the backend's traceback names the handler's file and line
        assert.matches("users%.lua:%d+: in function", err.traceback)
        local s = tostring(err)
        assert.matches("^users%.fail: 500 runtime_error: .*boom\nremote stack traceback:\n", s)
    end)

    it("keeps a backend's typed errors: ghost.error('not_found', msg, 404)", function()
        local ok, err = pcall(gw.users.fail_typed, 404, "not_found", "no user 7")
        assert.is_false(ok)
        assert.equal(404, err.code)
        assert.equal("not_found", err.type)
        assert.equal("no user 7", err.message)
    end)

    it("raises the gateway's errors the same way: 404 no_such_service, 404 no_such_method", function()
        local ok, err = pcall(gw.nosuch.method)
        assert.is_false(ok)
        assert.same({ 404, "no_such_service" }, { err.code, err.type })
        assert.equal("nosuch.method", err.method)
        ok, err = pcall(gw.users.nosuch)
        assert.is_false(ok)
        assert.same({ 404, "no_such_method", "no such method 'nosuch'" }, { err.code, err.type, err.message })
    end)

    it("gives nil, err instead of raising with gw:try() and ghost.connect{try = true}", function()
        local t = gw:try()
        local res, err = t.users.fail("x")
        assert.is_nil(res)
        assert.equal("runtime_error", err.type)
        assert.same({ id = 1, name = "user1" }, (t.users.get_profile(1)))
        assert.is_true(rawequal(t, gw:try())) -- cached
        local gw2 = assert(ghost.connect(f.gateway.addr, { try = true }))
        res, err = gw2.users.nosuch()
        assert.is_nil(res)
        assert.equal("no_such_method", err.type)
        gw2:close()
        res, err = ghost.try(function() return gw.users.fail("y") end)
        assert.is_nil(res)
        assert.equal("runtime_error", err.type)
    end)

    it("fails a call at its deadline with 504 deadline_exceeded, drops the late answer, keeps the connection",
        function()
            local fast = gw:with({ timeout = 0.2 })
            local t0 = ghost.now()
            local ok, err = pcall(fast.users.sleep, 1, "late")
            assert.is_false(ok)
            assert.same({ 504, "deadline_exceeded" }, { err.code, err.type })
            assert.is_true(ghost.now() - t0 < 0.9)
            -- the late answer arrives on the same connection and is dropped
            ghost.sleep(1)
            assert.equal("next", gw.users.echo("next"))
            assert.is_true(gw:is_connected())
        end)

    it("cancels a call: task:cancel() raises `cancelled` in the task and sends nothing more", function()
        local task = ghost.spawn(function() return gw.users.sleep(0.5, "never") end)
        assert.is_false(task:is_done()) -- it waits for its answer
        assert.is_true(task:cancel())
        local ok, err = task:result()
        assert.is_false(ok)
        assert.same({ 499, "cancelled" }, { err.code, err.type })
        assert.is_false(task:cancel()) -- already ended
        ghost.sleep(0.6)                -- the backend's late answer is dropped
        assert.equal(3, gw.users.echo(3))
    end)

    it("reconnects for new calls after the gateway dropped the connection", function()
        gw:close()
        h.cleanup()
        f = h.setup_ghost({ users = USERS }, { config = { limits = { idle_timeout = 0.2 } } })
        ghost, gw = f.ghost, f.gw
        assert.equal(1, gw.users.echo(1))
        -- the gateway closes the idle connection; the next call notices before sending
        local line, seen = f.gateway:wait_log("client_closed .*reason=idle_timeout")
        -- the close has reached this side's socket (the kernel says CLOSE_WAIT)
        assert(h.await(function() return close_wait(tonumber(line:match("peer=%S+:(%d+)"))) end))
        assert.is_true(gw:is_connected()) -- nothing has run the client's loop since
        assert.equal(2, gw.users.echo(2))
        -- the same after the client's loop has seen the close
        f.gateway:wait_log("client_closed .*reason=idle_timeout", nil, seen + 1)
        assert(ghost_await(ghost, function() return not gw:is_connected() end))
        assert.equal(3, gw.users.echo(3))
        assert.is_true(gw:is_connected())
    end)

    it("fails calls in flight with connection_lost when the gateway dies, reconnects when it is back",
        function()
            local task = ghost.spawn(function() return gw.users.sleep(5, "x") end)
            f.gateway:kill("sigkill")
            f.gateway:wait_exit()
            local ok, err = task:result()
            assert.is_false(ok)
            assert.same({ 502, "connection_lost" }, { err.code, err.type })
            -- no gateway: a new call cannot connect
            ok, err = pcall(gw.users.echo, 1)
            assert.is_false(ok)
            assert.equal("connection_failed", err.type)
            -- the same gateway again, on the same address
            local cfg = assert(h.read_file(f.gateway.config_path))
            assert(h.start_gateway(cfg))
            assert.equal("back", gw.users.echo("back"))
        end)

    it("authenticates with {token = ...}: ghost.auth on connect and again on every reconnection", function()
        gw:close()
        h.cleanup()
        local key = "k-ghost-client-0123456789"
        f = h.setup_ghost({ users = { script = USERS, policies = { { name = "auth" } } } }, {
            config = {
                limits = { idle_timeout = 0.2 },
                auth = { keys = { [key] = { identity = "spec", scopes = { "users.*" } } } },
            },
            connect = { token = key },
        })
        ghost, gw = f.ghost, f.gw
        assert.equal(1, gw.users.echo(1))
        assert(ghost_await(ghost, function() return not gw:is_connected() end)) -- idle: dropped
        assert.equal(2, gw.users.echo(2))                                         -- re-authenticated
        -- without a token the service refuses; with a wrong one, connect says why
        local anon = assert(ghost.connect(f.gateway.addr))
        local ok, err = pcall(anon.users.echo, 1)
        assert.is_false(ok)
        assert.same({ 401, "unauthenticated" }, { err.code, err.type })
        anon:close()
        local bad
        bad, err = ghost.connect(f.gateway.addr, { token = "k-wrong-0123456789abc" })
        assert.is_nil(bad)
        assert.equal("ghost.auth", err.method)
        assert.equal(401, err.code)
    end)

    it("keeps MessagePack str and bin apart, both ways: strings are str, ghost.bin values are bin", function()
        assert.equal("string", gw.users.kind("text"))
        assert.equal("bin", gw.users.kind(ghost.bin("bytes")))
        local raw = "\0\1\2\255\254 not utf-8 \192"
        local b = gw.users.echo(ghost.bin(raw))
        assert.is_true(ghost.is_bin(b))
        assert.equal(raw, tostring(b))
        assert.equal(#raw, #b)
        assert.is_true(b == ghost.bin(raw))
        local s = gw.users.echo(raw)
        assert.equal("string", type(s))
        assert.equal(raw, s)
        local nested = gw.users.echo({ list = { ghost.bin("a"), "a" }, key = ghost.bin("") })
        assert.is_true(ghost.is_bin(nested.list[1]))
        assert.equal("a", nested.list[2])
        assert.equal("", tostring(nested.key))
    end)

    it("sends an empty table as an array and ghost.map{} as a map; keeps integers and floats", function()
        assert.equal("table", gw.users.kind({}))
        assert.equal("map", gw.users.kind(ghost.map({})))
        assert.same({}, gw.users.echo({}))
        assert.equal(2 ^ 53, gw.users.echo(2 ^ 53))
        assert.equal(-1.5, gw.users.echo(-1.5))
        assert.equal(-(2 ^ 63), gw.users.echo(-(2 ^ 63)))
    end)

    it("refuses to send what MessagePack cannot carry, at the caller's line, and sends nothing", function()
        local before = gw.users.stats().requests
        -- (functions go by reference: remote objects, objects_spec.lua)
        local ok, err = pcall(gw.users.echo, { f = coroutine.create(print) })
        assert.is_false(ok)
        assert.matches("users.echo: argument 1: cannot encode a thread %(at %.f%)", err)
        local t = {}
        t.self = t
        ok, err = pcall(gw.users.echo, t)
        assert.is_false(ok)
        assert.matches("cycle", err)
        assert.equal(before + 1, gw.users.stats().requests)
    end)
end)
