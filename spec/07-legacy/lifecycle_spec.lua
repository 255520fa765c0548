-- jsonrpc-http pools and adapters across reloads and shutdowns: calls in flight finish under
-- the generation they started in, its connections and coroutines are let go once it has no
-- call left, and SIGTERM drains them. cleanup() checks that the gateway exits 0 with no
-- sanitizer report (make test SAN=1).
local h = require "spec.support.helpers"
local legacy = require "spec.support.legacy"
local uv = require "luv"

local CALC = uv.cwd() .. "/spec/07-legacy/adapters/calc_adapter.lua"

local function setup(calc_deadline, top)
    local up = legacy.jsonrpc()
    local gw = legacy.gateway({
        legacy = { protocol = "jsonrpc-http", upstream = up.url, deadline = 5, connections = 2 },
        calc = { adapter = CALC, deadline = calc_deadline or 5 },
    }, top)
    return up, gw, assert(h.client(gw.addr))
end

local function reload(gw)
    local n = #gw.proc.lines
    gw:kill("sighup")
    assert(gw:wait_log("reloaded", h.timeout(5), n + 1))
end

describe("Legacy services across reloads and shutdown", function()
    after_each(h.cleanup)

    it("finishes jsonrpc-http calls in flight across a reload, then lets the old pool go", function()
        local up, gw, c = setup()
        local ids = {}
        for i = 1, 6 do ids[i] = assert(c:request("legacy.slow", { 0.3, i })) end
        reload(gw)
        for i, r in ipairs(assert(c:wait_all(ids, h.timeout(5)))) do assert.equal(i, r.result) end
        assert.equal(7, c:call("legacy.add", { 3, 4 }))
        -- the retired generation closed its connections: the upstream sees the new pool's only
        assert(h.await(function()
            return legacy.rpc(up.url, "connections").result >= 5 -- 2 old, 2 new, curl
        end))
    end)

    it("lets adapter coroutines that outlived their calls go when their generation retires", function()
        local _, gw, c = setup(0.2)
        local _, err = c:call("calc.slow", { 0.6 })
        assert(h.is_error(err, 504, "deadline_exceeded"))
        reload(gw) -- the old generation has no call left: its adapter is released at once
        assert.equal(5, c:call("calc.add", { 2, 3 }))
        h.pause(0.6) -- the abandoned coroutine's inner call ends with no one to answer
        assert.equal(9, c:call("calc.add", { 4, 5 }))
        assert.equal(0, #c.duplicates)
    end)

    it("drains calls waiting on jsonrpc-http and adapters on SIGTERM, and exits 0", function()
        local up, gw, c = setup()
        local a = assert(c:request("legacy.slow", { 0.5, "a" }))
        local b = assert(c:request("calc.slow", { 0.5 }))
        assert(h.await(function() return legacy.count(up, "slow") == 2 end)) -- both in flight
        gw:kill("sigterm")
        assert.equal("a", assert(c:wait_response(a, h.timeout(5))).result)
        assert.equal("late", assert(c:wait_response(b, h.timeout(5))).result)
        assert.equal(0, gw:wait_exit(h.timeout(5)))
    end)

    it("stops with calls hanging upstream and adapters waiting: 531 after drain_timeout, exit 0", function()
        local up, gw, c = setup(30, { drain_timeout = 0.3 })
        local hole = uv.new_tcp()
        assert(hole:bind("127.0.0.1", 0))
        local held = {}
        assert(hole:listen(8, function()
            local cl = uv.new_tcp()
            hole:accept(cl)
            held[#held + 1] = cl
        end))
        local url = "http://127.0.0.1:" .. hole:getsockname().port .. "/"
        local a = assert(c:request("legacy.hang", {}))
        local b = assert(c:request("calc.fetch", { url, 30 }))
        assert(h.await(function() return #held > 0 and legacy.count(up, "hang") == 1 end))
        gw:kill("sigterm")
        for _, id in ipairs({ a, b }) do
            local r = assert(c:wait_response(id, h.timeout(5)))
            assert(h.is_error(r.error, 531, "shutting_down"))
        end
        assert.equal(0, gw:wait_exit(h.timeout(5)))
        for _, cl in ipairs(held) do cl:close() end
        hole:close()
    end)
end)
