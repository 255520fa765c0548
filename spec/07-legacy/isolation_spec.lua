-- Adapters run in their own Lua state (docs/trust.md). What an adapter file does to its
-- globals, to the modules it requires or to the string metatable stays in its state: the
-- gateway's ghost.auth and policies, and other adapters, are not reachable from it. And each
-- adapter's state has the `lua_memory` budget: an adapter call that grows a table without bound
-- answers 500 internal with an id, and the next call is served by the same process.
local h = require "spec.support.helpers"
local legacy = require "spec.support.legacy"
local e2e = require "spec.support.policy_e2e"
local uv = require "luv"

local CALC = "spec/07-legacy/adapters/calc_adapter.lua"
local KEY = "isolation-key-0123456789"
local MiB = 1024 * 1024

local function abs(p) return uv.cwd() .. "/" .. p end

-- Everything an adapter could try to make every ghost.auth succeed, or to break the policies.
local TAMPER = [[
local function tamper()
    local auth = require "ghost.auth"
    auth.authenticate = function() return "mallory" end
    auth.new = function() return { authenticate = function() return "mallory" end } end
    local evil = { authenticate = function() return "mallory" end, new = function() return {} end }
    package.loaded["ghost.auth"] = evil
    package.loaded["ghost.policy"] = evil
    package.loaded["ghost.gateway"] = evil
    package.preload["ghost.auth"] = function() return evil end
    local host_ok, host = pcall(require, "ghost.host")
    if host_ok and type(host) == "table" then
        host.consttime_eq = function() return true end
    end
    getmetatable("").__index = { find = function() return 1, 1 end, match = function() return "x" end }
    string.find = function() return 1, 1 end
    string.format = function() return "forged" end
    rawset(_G, "require", function() return evil end)
    rawset(_G, "pairs", function() return next, {} end)
    rawset(_G, "tostring", function() return "mallory" end)
    return "tampered"
end
tamper() -- while the file loads, and again on each call of tamper()
return { tamper = tamper }
]]

-- Only what the reviewer did: replace ghost.auth's authenticate, at run time.
local SNEAKY = [[
return {
    replace = function()
        require("ghost.auth").authenticate = function() return "mallory" end
        return "replaced"
    end,
}
]]

local HOG = [[
return {
    grow = function()
        local t = {}
        while true do t[#t + 1] = { #t } end
    end,
    echo = function(x) return x end,
}
]]

describe("An adapter's Lua state", function()
    after_each(h.cleanup)

    -- The gateway with the adapters named in `adapters` (evil, sneaky, hog) besides calc.
    local function setup(adapters, top)
        local up = legacy.jsonrpc()
        local demo = assert(h.start_upstream())
        local services = {
            legacy = { protocol = "jsonrpc-http", upstream = up.url, deadline = 5,
                       policies = { { name = "guard", allow = { "add" } } } },
            demo = { upstream = demo.addr, deadline = 5 },
            secure = { upstream = demo.addr, deadline = 5, policies = { { name = "auth" } } },
            calc = { adapter = abs(CALC), deadline = 2 },
        }
        local sources = { evil = TAMPER, sneaky = SNEAKY, hog = HOG }
        for _, name in ipairs(adapters) do
            services[name] = { adapter = legacy.adapter(sources[name], name .. "_adapter.lua"), deadline = 5 }
        end
        local cfg = { auth = { keys = { [KEY] = { identity = "ci", scopes = { "secure.*" } } } } }
        for k, v in pairs(top or {}) do cfg[k] = v end
        local gw = legacy.gateway(services, cfg)
        return gw, assert(h.client(gw.addr))
    end

    it("cannot replace the gateway's ghost.auth: a wrong token is still refused with 401", function()
        local gw, c = setup({ "sneaky" })
        assert.equal("replaced", c:call("sneaky.replace", {}))
        local _, err = c:call("ghost.auth", { "wrong-token" })
        assert(h.is_error(err, 401, "unauthenticated"))
        _, err = c:call("secure.echo", { "x" })
        assert(h.is_error(err, 401, "unauthenticated"))
        local other = assert(h.client(gw.addr))
        assert.same({ identity = "ci" }, other:call("ghost.auth", { KEY }))
        assert.equal("hi", other:call("secure.echo", { "hi" }))
    end)

    it("keeps what an adapter does to ghost.auth, package.loaded, the string metatable and globals to itself",
        function()
        local gw, c = setup({ "evil" })
        -- tampered while loading, and now again at run time
        assert.equal("tampered", c:call("evil.tamper", {}))
        -- a wrong token is still refused, on a new connection and on this one
        local other = assert(h.client(gw.addr))
        local _, err = other:call("ghost.auth", { "wrong-token" })
        assert(h.is_error(err, 401, "unauthenticated"))
        _, err = other:call("secure.echo", { "x" })
        assert(h.is_error(err, 401, "unauthenticated"))
        _, err = c:call("ghost.auth", { "another-wrong-token" })
        assert(h.is_error(err, 401, "unauthenticated"))
        -- the right one still works, and the policies' string functions are the real ones
        assert.same({ identity = "ci" }, c:call("ghost.auth", { KEY }))
        assert.equal("hi", c:call("secure.echo", { "hi" }))
        _, err = c:call("legacy.secret", {})
        assert(h.is_error(err, 403, "forbidden"))
        assert.equal(3, c:call("legacy.add", { 1, 2 }))
        -- another adapter has its own state too
        assert.equal(5, c:call("calc.add", { 2, 3 }))
        assert.equal("tampered", c:call("evil.tamper", {}))
        _, err = other:call("ghost.auth", { "wrong-again" })
        assert(h.is_error(err, 401, "unauthenticated"))
    end)

    it("has the lua_memory budget: growing without bound answers 500 internal with an id; the next call runs",
        function()
        local gw, c = setup({ "hog" }, { lua_memory = 32 * MiB })
        local _, err = c:call("hog.grow", {})
        assert(h.is_error(err, 500, "internal"))
        assert.matches("^%x%x%x%x%x%x%x%x$", err.id)
        -- the client gets a generic message with the id (error_details is off); the log keeps why
        assert.equal("adapter error (id " .. err.id .. "; see the gateway's log)", err.message)
        local lines = assert(e2e.await_lines(gw, "adapter_error id=" .. err.id
            .. " service=hog method=grow", 1))
        local line = lines[1]
        assert.matches("not enough memory (lua_memory is 33554432 bytes; the adapter's state was collected)",
            line, 1, true)
        -- the same connection, the same process, and the adapter still works
        assert.equal("after", c:call("hog.echo", { "after" }))
        for _ = 1, 3 do
            _, err = c:call("hog.grow", {})
            assert(h.is_error(err, 500, "internal"))
            assert.equal(7, c:call("hog.echo", { 7 }))
        end
        assert.equal(5, c:call("calc.add", { 2, 3 }))
        assert.is_false(c.closed)
        assert.is_falsy(gw.proc.exited)
    end)
end)
