-- ghost.serve(obj, addr) exports a Lua table as a MessagePack-RPC backend: its public own
-- functions only (plus what `expose` lists), each request in its own coroutine, so a handler
-- can call other services through the gateway while the backend goes on serving. Handler
-- errors become error responses with a traceback. Real processes, real gateway.
local h = require "spec.support.helpers"

local USERS = "spec/04-client/backends/users.lua"
local OBJECTS = "spec/04-client/backends/objects.lua"

describe("ghost.serve", function()
    local ghost, gw, f

    after_each(h.cleanup)

    it("exports the table's public functions, not _private ones, not what its metatable gives", function()
        -- method_names = "any": the gateway lets private names through to ghost.serve's own check
        f = h.setup_ghost({ acct = { script = OBJECTS, method_names = "any" } })
        ghost, gw = f.ghost, f.gw
        assert.same({ "deposit", "greet", "settings.limits.get" }, f.backends.acct.methods)
        local t = gw:try()
        for _, name in ipairs({ "_audit", "balance", "__index", "prefix", "_balance" }) do
            local res, err = t:call("acct." .. name)
            assert.is_nil(res)
            assert.same({ 404, "no_such_method" }, { err.code, err.type }, name)
        end
    end)

    it("calls handlers as methods with {self = true}, exposes inherited methods listed in expose", function()
        f = h.setup_ghost({ acct = OBJECTS })
        ghost, gw = f.ghost, f.gw
        assert.equal(110, gw.acct.deposit(10))
        assert.equal(115, gw.acct:deposit(5))
        assert.equal("hello world", gw.acct.greet("world"))
        assert.equal("nested", gw.acct.settings.limits.get())
    end)

    it("answers a handler's error with {code, type, message, traceback} and keeps serving", function()
        f = h.setup_ghost({ users = { script = USERS, error_details = true } })
        ghost, gw = f.ghost, f.gw
        for i = 1, 3 do
            local ok, err = pcall(gw.users.fail, "bad " .. i)
            assert.is_false(ok)
            assert.equal("runtime_error", err.type)
            assert.matches("bad " .. i .. "$", err.message)
            assert.matches("^stack traceback:\n", err.traceback)
            assert.matches("users%.lua:%d+: in function", err.traceback)
        end
        assert.equal("still here", gw.users.echo("still here"))
        -- the raw error the backend sent is kept too
        local _, err = pcall(gw.users.fail, "raw")
        assert.same({ "code", "message", "traceback", "type" }, (function()
            local keys = {}
            for k in pairs(err.data) do keys[#keys + 1] = k end
            table.sort(keys)
            return keys
        end)())
    end)

    it("lets a handler call another backend through the gateway, serving other requests meanwhile", function()
        f = h.setup_ghost({ front = { script = USERS, error_details = true },
                            back = { script = USERS, error_details = true } })
        ghost, gw = f.ghost, f.gw
        -- client -> gateway -> front.relay -> gateway -> back.get_profile
        assert.same({ id = 5, name = "user5" }, gw.front.relay("back.get_profile", 5))
        -- a relayed error keeps its type; the front's traceback and the back's are both there
        local ok, err = pcall(gw.front.relay, "back.fail", "deep")
        assert.is_false(ok)
        assert.equal("runtime_error", err.type)
        assert.matches("deep$", err.message)
        assert.matches("caused by a remote error of back%.fail", err.traceback)
        -- while front.relay waits for back.sleep, front still answers
        local slow = ghost.spawn(function() return gw.front.relay("back.sleep", 0.5, "slow") end)
        local t0 = ghost.now()
        assert.equal("quick", gw.front.echo("quick"))
        assert.is_true(ghost.now() - t0 < 0.4)
        assert.is_false(slow:is_done())
        assert.equal("slow", slow:wait())
    end)

    it("handles many requests at once: 200 relayed calls are all in flight together", function()
        f = h.setup_ghost({ front = USERS, back = USERS })
        ghost, gw = f.ghost, f.gw
        local fns = {}
        for i = 1, 200 do
            fns[i] = function() return gw.front.relay("back.barrier", 200, i) end
        end
        local results = ghost.all(fns)
        assert.equal(200, #results)
        assert.equal(200, results[200])
    end)

    it("stops on SIGTERM: answers what is in flight, then exits 0", function()
        f = h.setup_ghost({ users = USERS })
        ghost, gw = f.ghost, f.gw
        local call = ghost.spawn(function() return gw.users.sleep(0.3, "answered") end)
        -- stats() goes on the same upstream connection, after the sleep: once it is answered
        -- the backend has the sleep call in hand
        assert.is_true(gw.users.stats().requests >= 2)
        f.backends.users:kill("sigterm")
        assert.equal("answered", call:wait())
        local code, sig = f.backends.users:wait_exit()
        assert.equal(0, code)
        assert.equal(0, sig)
    end)

    it("refuses a table without public functions, and an address it cannot listen on", function()
        local r = assert(h.run_lua([[
            local ghost = require "ghost"
            local ok, err = pcall(ghost.serve, { _x = print, data = {} }, "tcp://127.0.0.1:0")
            print(ok, err)
            print(ghost.serve({ f = print }, "tcp://256.0.0.1:1"))
        ]]))
        assert.equal(0, r.code)
        assert.matches("false\t.*ghost.serve: the object has no public function", r.stdout)
        assert.matches("nil\t.*256.0.0.1", r.stdout)
    end)
end)
