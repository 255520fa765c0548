-- require "ghost": gw = ghost.connect(addr) is a proxy. gw.users.get_profile(42) calls
-- users.get_profile with params [42]; names are cached proxies made by __index; names that
-- begin with "__" are never sent; the local methods shadow remote names of the same spelling.
-- A real gateway routes service `users` to a real ghost.serve backend (backends/users.lua).
local h = require "spec.support.helpers"

local USERS = "spec/04-client/backends/users.lua"

describe("A ghost.connect() proxy", function()
    local ghost, gw

    before_each(function()
        local f = h.setup_ghost({ users = USERS })
        ghost, gw = f.ghost, f.gw
    end)

    after_each(h.cleanup)

    it("calls users.get_profile with [42] both ways: gw.users.get_profile(42), gw.users:get_profile(42)",
        function()
            assert.same({ n = 1, args = { 42 } }, gw.users.params(42))
            assert.same({ n = 1, args = { 42 } }, gw.users:params(42))
            assert.same({ id = 42, name = "user42" }, gw.users.get_profile(42))
            assert.same({ id = 42, name = "user42" }, gw.users:get_profile(42))
        end)

    it("sends every argument, nil included, and no argument as []", function()
        assert.same({ n = 0, args = {} }, gw.users.params())
        assert.same({ n = 0, args = {} }, gw.users:params())
        assert.same({ n = 3, args = { nil, 2, nil } }, gw.users.params(nil, 2, nil))
        assert.same({ n = 2, args = { "a", { x = 1 } } }, gw.users:params("a", { x = 1 }))
    end)

    it("turns nested names into dotted methods: gw.users.invoices.list(2) is users.invoices.list", function()
        assert.same({ page = 2, items = { "a", "b" } }, gw.users.invoices.list(2))
        assert.same({ page = 3, items = { "a", "b" } }, gw.users.invoices:list(3))
        assert.same({ page = 1, items = { "a", "b" } }, gw:call("users.invoices.list"))
    end)

    it("caches proxies: the same object on every access, not one per call", function()
        assert.is_true(rawequal(gw.users, gw.users))
        assert.is_true(rawequal(gw.users.get_profile, gw.users.get_profile))
        assert.is_true(rawequal(gw.users.invoices.list, gw.users.invoices.list))
        assert.equal("ghost proxy users.get_profile", tostring(gw.users.get_profile))
    end)

    it("never sends a name beginning with __: metamethod lookups, tostring, pairs, debuggers",
        function()
            local before = gw.users.stats().requests
            assert.is_nil(gw.__index)
            assert.is_nil(gw.__call)
            assert.is_nil(gw.users.__tostring)
            assert.is_nil(gw.users.get_profile.__len)
            assert.is_nil(gw.users.__gc)
            assert.is_nil(gw.users[1])
            assert.is_nil(gw.users[true])
            assert.is_string(tostring(gw.users))
            for _ in pairs(gw.users) do end
            assert.is_false(getmetatable(gw.users))
            assert.is_nil(rawget(gw.users, "__index"))
            -- what a debugger or a serializer looks at
            local info = debug.getinfo(1, "S")
            assert.is_table(info)
            local deepcompare = require("luassert.util").deepcompare
            assert.has_no.errors(function() return deepcompare(gw.users, gw.users) end)
            -- one request since `before`: the stats call that reads the count
            assert.equal(before + 1, gw.users.stats().requests)
        end)

    it("is read-only: assigning a field is an error, not a call", function()
        assert.has_error(function() gw.users.x = 1 end, "ghost proxies are read-only (assigning 'x')")
    end)

    it("has local methods close, ping, call, is_connected that shadow remote names at every level", function()
        assert.is_function(gw.users.close)
        assert.is_function(gw.users.ping)
        assert.is_number(gw.users:ping()) -- the local ping: seconds for a round trip
        assert.is_number(gw:ping())
        assert.is_true(gw:is_connected())
        assert.is_true(gw.users.is_connected())
    end)

    it("reaches any remote name with gw:call(full name, ...), the shadowed ones included", function()
        assert.equal("remote close", gw:call("users.close"))
        assert.equal("remote ping", gw:call("users.ping"))
        assert.equal("remote call 7", gw:call("users.call", 7))
        assert.equal("remote is_connected", gw.call("users.is_connected"))
        assert.same({ n = 1, args = { 42 } }, gw.users:call("users.params", 42))
        assert.is_true(gw:is_connected()) -- the remote close closed nothing here
    end)

    it("closes with gw:close(): later calls fail with 499 closed, nothing is reconnected", function()
        gw:close()
        assert.is_false(gw:is_connected())
        local ok, err = pcall(gw.users.echo, 1)
        assert.is_false(ok)
        assert.is_true(ghost.is_error(err))
        assert.equal("closed", err.type)
        assert.equal(499, err.code)
        assert.is_false(gw:is_connected())
    end)
end)
