-- `ghostgate run script.lua [args]` runs a Lua script with `ghost` built in: arg and ... like
-- luajit's, tasks run to their end after the script returns, exit status from os.exit, 1 with
-- the traceback on stderr for an uncaught error. The same script runs in plain luajit.
local h = require "spec.support.helpers"

describe("ghostgate run", function()
    after_each(h.cleanup)

    it("passes arguments in arg (arg[0] is the script) and in ...", function()
        local r = assert(h.run_lua([[
            print(arg[0]:match("[^/]+$"), arg[1], arg[2], select("#", ...), ...)
            print(type(require("ghost").connect), package.loaded["ghost.core"] ~= nil)
        ]], { "one", "two words" }))
        assert.equal(0, r.code, r.output)
        local out = r.stdout:gsub("function", "true")
        assert.equal("script.lua\tone\ttwo words\t2\tone\ttwo words\ntrue\ttrue", out)
    end)

    it("exits with os.exit's status, and 0 when the script ends", function()
        assert.equal(7, assert(h.run_lua("os.exit(7)\n")).code)
        assert.equal(0, assert(h.run_lua("local x = 1\n")).code)
    end)

    it("exits 1 on an uncaught error, with the message and the traceback on stderr", function()
        local r = assert(h.run_lua("local function f() error('boom') end\nf()\n"))
        assert.equal(1, r.code)
        assert.matches("ghostgate run: .*script.lua:1: boom\nstack traceback:\n", r.stderr)
        assert.matches("in function 'f'", r.stderr)
    end)

    it("prints error objects through their __tostring", function()
        local r = assert(h.run_lua([[
            local ghost = require "ghost"
            error(ghost.error("not_found", "no such thing", 404))
        ]]))
        assert.equal(1, r.code)
        assert.matches("ghostgate run: ghost: 404 not_found: no such thing\nstack traceback:", r.stderr)
    end)

    it("names the type of an error object that is not a string and has no __tostring", function()
        local r = assert(h.run_lua("error({ 'a table' })\n"))
        assert.equal(1, r.code)
        assert.matches("ghostgate run: (error object is not a string: a table value)\nstack traceback:",
            r.stderr, 1, true)
    end)

    it("runs spawned tasks to their end after the script returns", function()
        local r = assert(h.run_lua([[
            local ghost = require "ghost"
            ghost.spawn(function() ghost.sleep(0.1); print("task 1 done") end)
            ghost.spawn(function() ghost.sleep(0.05); print("task 2 done") end)
            print("script done")
        ]]))
        assert.equal(0, r.code, r.output)
        assert.equal("script done\ntask 2 done\ntask 1 done", r.stdout)
    end)

    -- A timer that falls due while Lua runs fires first thing in the next loop turn; the wake
    -- it queues must end that turn, not wait in the queue until the next timer (here 3 s away)
    -- or byte wakes the loop. A ghost.serve backend answered 0.3 s sleeps seconds late so.
    it("wakes a task whose timer fell due while Lua ran at once, not at the next timer", function()
        local r = assert(h.run_lua([[
            local ghost = require "ghost"
            local long = ghost.spawn(function() ghost.sleep(3) end)
            local short = ghost.spawn(function() ghost.sleep(0.001); return "woke" end)
            local t = ghost.now()
            repeat until ghost.now() - t > 0.02 -- the short timer falls due meanwhile
            t = ghost.now()
            print(short:wait(), ("%.3f"):format(ghost.now() - t))
            long:cancel()
        ]]))
        assert.equal(0, r.code, r.output)
        local woke, waited = r.stdout:match("^(%a+)\t([%d.]+)$")
        assert.equal("woke", woke, r.output)
        assert.is_true(tonumber(waited) < 1, "the wake waited " .. waited .. " s for the next timer")
    end)

    it("fails (exit 1) when a task failed and nobody waited for it", function()
        local r = assert(h.run_lua([[
            local ghost = require "ghost"
            ghost.spawn(function() ghost.sleep(0.01); error("lost in a task") end)
        ]]))
        assert.equal(1, r.code)
        assert.matches("a task failed and nobody waited for it: .*lost in a task", r.stderr)
    end)

    it("reports a wait that can never end instead of hanging", function()
        local r = assert(h.run_lua([[
            local ghost = require "ghost"
            local e = ghost.event()
            e:wait()
        ]]))
        assert.equal(1, r.code)
        assert.matches("can never finish", r.stderr)
    end)

    it("points encoding errors at the caller's line", function()
        local up = assert(h.start_upstream())
        local r = assert(h.run_lua([[
            local ghost = require "ghost"
            local gw = assert(ghost.connect(arg[1]))

            gw.echo({ f = coroutine.create(print) })
        ]], { up.addr }))
        assert.equal(1, r.code)
        assert.matches("script.lua:4: echo: argument 1: cannot encode a thread %(at %.f%)", r.stderr)
    end)

    it("runs the same script in plain luajit (LUA_PATH, LUA_CPATH) with the same C core", function()
        local up = assert(h.start_upstream())
        local script = [[
            local ghost = require "ghost"
            local gw = assert(ghost.connect(arg[1]))
            print(package.loaded["ghost.core"] ~= nil, gw.echo("same"), gw:call("add", 2, 40))
        ]]
        for _, luajit in ipairs({ true, false }) do
            local r = assert(h.run_lua(script, { up.addr }, { luajit = luajit }))
            assert.equal(0, r.code, r.output)
            assert.equal("true\tsame\t42", r.stdout)
        end
    end)

    it("prints its usage without a script", function()
        local r = assert(h.run(h.bin("ghostgate"), { "run" }))
        assert.equal(64, r.code)
        assert.matches("usage: ghostgate run SCRIPT.lua", r.stderr)
    end)
end)
