-- Typed interfaces: ghost.interface{name, methods} checks method names and argument types
-- before anything is sent. The gateway's config declares methods per service; sys.describe
-- lists them and `ghostgate stubs -o DIR` turns them into lua-language-server annotations.
local h = require "spec.support.helpers"

local USERS = "spec/04-client/backends/users.lua"

local METHODS = {
    get_profile = { "id: integer" },
    params = { "string", "number?", "..." },
    kind = { "value: binary" },
    ["invoices.list"] = { "page: integer?" },
    stats = {},
}

describe("Typed interfaces", function()
    local ghost, gw, f

    before_each(function()
        f = h.setup_ghost({ users = { script = USERS, methods = METHODS } })
        ghost, gw = f.ghost, f.gw
    end)

    after_each(h.cleanup)

    local function requests()
        return gw.users.stats().requests
    end

    it("sends checked calls like the proxy: users.get_profile(42) and users:get_profile(42)", function()
        local users = ghost.interface({ name = "users", methods = METHODS }, gw)
        assert.same({ id = 42, name = "user42" }, users.get_profile(42))
        assert.same({ id = 7, name = "user7" }, users:get_profile(7))
        assert.same({ n = 3, args = { "a", 1, true } }, users.params("a", 1, true))
        assert.same({ n = 1, args = { "a" } }, users.params("a"))
        assert.equal("bin", users.kind(ghost.bin("x")))
        assert.is_true(rawequal(users.get_profile, users.get_profile))
    end)

    it("fails a misspelt method locally, with a suggestion, and sends nothing", function()
        local users = ghost.interface({ name = "users", methods = METHODS }, gw)
        local before = requests()
        local ok, err = pcall(function() return users.get_profil(42) end)
        assert.is_false(ok)
        assert.matches("interface 'users' has no method 'get_profil' %(did you mean 'get_profile'%?%)", err)
        assert.matches("interface_spec.lua:%d+:", err) -- at the caller's line
        ok, err = pcall(function() return users.delete_everything() end)
        assert.is_false(ok)
        assert.matches("has no method 'delete_everything'$", err)
        assert.equal(before + 1, requests())
    end)

    it("checks argument types and counts before sending", function()
        local users = ghost.interface({ name = "users", methods = METHODS }, gw)
        local before = requests()
        local cases = {
            { function() return users.get_profile("42") end,
              "users.get_profile: argument 1 %(id%) must be an integer, got string \"42\"" },
            { function() return users.get_profile(4.5) end, "must be an integer, got number 4.5" },
            { function() return users.get_profile() end, "expects at least 1 argument, got 0" },
            { function() return users.get_profile(1, 2) end, "expects at most 1 argument, got 2" },
            { function() return users.params(1) end, "argument 1 %(arg1%) must be a string, got number 1" },
            { function() return users.params("a", "b") end, "argument 2 %(arg2%) must be a number" },
            { function() return users.kind("not binary") end, "argument 1 %(value%) must be a binary" },
        }
        for _, c in ipairs(cases) do
            local ok, err = pcall(c[1])
            assert.is_false(ok)
            assert.matches(c[2], err)
        end
        assert.equal(before + 1, requests())
    end)

    it("declares once and binds to any connection: Users:bind(gw), try style included", function()
        local Users = ghost.interface({ name = "users", methods = METHODS })
        assert.same({ "get_profile", "invoices.list", "kind", "params", "stats" }, Users:methods())
        local users = Users:bind(gw:try())
        assert.same({ id = 1, name = "user1" }, users.get_profile(1))
        assert.has_error(function() Users:bind({}) end)
        assert.has_error(function() ghost.interface({ name = "users", methods = { f = { "int" } } }) end,
            "ghost.interface: users.f: argument 1: unknown type 'int' (types: integer, number, string, " ..
            "boolean, table, binary, any)")
    end)

    it("sys.describe lists each service's declared methods with their argument types", function()
        local d = gw:call("sys.describe")
        assert.equal(1, d.users.upstreams)
        assert.same({ args = { "integer" }, names = { "id" } }, d.users.methods.get_profile)
        assert.same({ args = { "string", "number?", "..." } }, d.users.methods.params)
        assert.same({ args = {} }, d.users.methods.stats)
        assert.same({ args = { "integer?" }, names = { "page" } }, d.users.methods["invoices.list"])
        local ok, err = pcall(gw.sys.nosuch)
        assert.is_false(ok)
        assert.equal(404, err.code)
    end)

    it("sys.describe lists only what the service's guard exports", function()
        gw:close()
        h.cleanup()
        f = h.setup_ghost({ users = { script = USERS, methods = METHODS,
            policies = { { name = "guard", deny = { "stats", "kind" } } } } })
        ghost, gw = f.ghost, f.gw
        local names = {}
        for k in pairs(gw:call("sys.describe").users.methods) do names[#names + 1] = k end
        table.sort(names)
        assert.same({ "get_profile", "invoices.list", "params" }, names)
    end)

    it("ghostgate stubs -o DIR writes lua-language-server annotations that parse and load", function()
        local dir = h.tmpdir() .. "/stubs"
        local r = assert(h.run(h.bin("ghostgate"), { "stubs", "-a", f.gateway.addr, "-o", dir }))
        assert.equal(0, r.code, r.output)
        assert.matches("wrote .*ghost_api.lua, .*ghost_services.lua %(1 service, 5 methods%)", r.stdout)
        local text = assert(h.read_file(dir .. "/ghost_services.lua"))
        assert.matches("---@meta", text, 1, true)
        assert.matches("---@class ghost.services.users\n", text, 1, true)
        assert.matches("---@field get_profile fun(id: integer): any\n", text, 1, true)
        assert.matches("---@field params fun(arg1: string, arg2?: number, ...: any): any\n", text, 1, true)
        assert.matches("---@field kind fun(value: ghost.Bin): any\n", text, 1, true)
        assert.matches("---@field invoices ghost.services.users.invoices\n", text, 1, true)
        assert.matches("---@class ghost.services.users.invoices\n---@field list fun(page?: integer): any",
            text, 1, true)
        assert.matches("---@class ghost.Gateway: ghost.Client\n---@field users ghost.services.users\n",
            text, 1, true)
        for _, name in ipairs({ "ghost_services.lua", "ghost_api.lua" }) do
            local bc = assert(h.run("luajit", { "-bl", dir .. "/" .. name }))
            assert.equal(0, bc.code, bc.output)
            assert.is_table(assert(loadfile(dir .. "/" .. name))())
        end
    end)

    it("ghostgate stubs fails with a message when the gateway cannot be reached", function()
        local dir = h.tmpdir()
        local r = assert(h.run(h.bin("ghostgate"),
            { "stubs", "-a", "tcp://127.0.0.1:" .. h.unused_port(), "-o", dir, "-t", "2" }))
        assert.equal(1, r.code)
        assert.matches("ghostgate stubs: cannot connect to tcp://127.0.0.1:%d+: ", r.stderr)
    end)

    it("the gateway refuses a config whose method declarations use an unknown type", function()
        local dir = h.tmpdir()
        local path = dir .. "/bad.lua"
        h.write_file(path, "return { services = { users = { upstream = 'tcp://127.0.0.1:1', " ..
            "methods = { get = { 'id: int' } } } } }")
        local r = assert(h.run(h.bin("ghostgate"), { "check", "-c", path }))
        assert.equal(1, r.code)
        assert.matches("services.users.methods.get: argument 1: unknown type 'int'", r.stderr, 1, true)
    end)
end)
