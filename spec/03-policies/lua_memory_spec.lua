-- A Lua state's memory budget (`lua_memory`). A policy that grows a table without bound is
-- stopped at the budget: that call answers 500 internal with an id, the gateway log has the id,
-- the state is collected, and the next call is served by the same process.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"

local HOG = [[
-- a user policy that grows a table on command
return {
    name = "hog",
    new = function() return {} end,
    access = function(_, ctx)
        if ctx.method == "grow" then
            local t = {}
            while true do t[#t + 1] = { #t } end
        end
    end,
}
]]

local MiB = 1024 * 1024

describe("A policy over its Lua memory budget", function()
    after_each(h.cleanup)

    local function setup(budget)
        local dir = h.tmpdir()
        assert(h.write_file(dir .. "/hog.lua", HOG))
        local up = assert(h.start_upstream())
        local gw = e2e.gateway(([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1, policy_path = "%s/?.lua", lua_memory = %d,
    services = { demo = { upstream = "%%UP1%%", deadline = 5, policies = { policy "hog" {} } } },
}]]):format(dir, budget), { up = { up } })
        return up, gw, assert(h.client(gw.addr))
    end

    it("answers that call with 500 internal and an id the log has; the next call is served", function()
        local up, gw, c = setup(32 * MiB)
        local _, err = c:call("demo.grow", {})
        assert(h.is_error(err, 500, "internal"))
        local id = err.message:match("^policy error %(id (%x+); see the gateway log%)$")
        assert.is_string(id, err.message)
        local line = assert(gw:wait_log("policy_error id=" .. id))
        assert.matches("service=demo phase=request", line, 1, true)
        assert.matches("not enough memory (lua_memory is 33554432 bytes; the state was collected)",
            line, 1, true)
        assert.equal(0, e2e.seen(up))
        -- the same connection, so the same process (gw.pid, workers = 1: no master restarts it)
        assert.equal("after", c:call("demo.echo", { "after" }))
        assert.is_false(c.closed)
        assert.is_falsy(gw.proc.exited)
        -- and again: the state came back under its budget each time
        for _ = 1, 3 do
            _, err = c:call("demo.grow", {})
            assert(h.is_error(err, 500, "internal"))
            assert.equal(2, c:call("demo.add", { 1, 1 }))
        end
        assert.is_false(c.closed)
        assert.is_falsy(gw.proc.exited)
    end)

    it("is refused by `ghostgate check` when negative", function()
        local path = h.tmpdir() .. "/config.lua"
        assert(h.write_file(path, [[
return { lua_memory = -1, services = { demo = { upstream = "tcp://127.0.0.1:7421" } } }
]]))
        local r = assert(h.run(h.bin("ghostgate"), { "check", "-c", path }, { timeout = h.timeout(10) }))
        assert.equal(1, r.code, r.output)
        assert.matches("lua_memory: must be at least 0", r.stderr, 1, true)
    end)
end)
