-- guard (policies/guard.lua) in plain LuaJIT: which method names a service exports. Decisions
-- only depend on the name, so the runtime caches them; these specs call decide() directly and
-- through a pipeline.
local kit = require "spec.support.policy_kit"

local function guard(opts)
    local spec = { name = "guard" }
    for k, v in pairs(opts or {}) do spec[k] = v end
    local s = assert(kit.validate(spec))
    return s.module.new(s.conf, { name = "demo" })
end

local function allowed(g, method)
    return g:decide(method) == nil
end

describe("guard", function()
    it("exports every well-formed name when no allow list is given", function()
        local g = guard()
        for _, m in ipairs({ "echo", "get_user", "users.list", "a.b.c", "X9" }) do
            assert.is_true(allowed(g, m), m)
        end
    end)

    it("denies by default with an allow list: exact names and globs", function()
        local g = guard({ allow = { "echo", "get_*", "admin.**", "v?" } })
        for _, m in ipairs({ "echo", "get_user", "get_", "admin.users.list", "admin.x", "v1" }) do
            assert.is_true(allowed(g, m), m)
        end
        for _, m in ipairs({ "echo2", "put_user", "get_user.secret", "admin", "v10", "stats" }) do
            assert.is_false(allowed(g, m), m)
        end
    end)

    it("does not let '?' in an allow list pass a '.'", function()
        local g = guard({ allow = { "a?b" } })
        assert.is_true(allowed(g, "a_b"))
        assert.is_false(allowed(g, "a.b"))
    end)

    it("lets deny win over allow", function()
        local g = guard({ allow = { "get_*" }, deny = { "get_secret", "get_internal_*" } })
        assert.is_true(allowed(g, "get_user"))
        assert.is_false(allowed(g, "get_secret"))
        assert.is_false(allowed(g, "get_internal_keys"))
    end)

    it("always refuses private and metamethod-like names, whatever the lists say", function()
        local g = guard({ allow = { "**" } })
        local names = { "_debug", "__index", "__gc", "__call", "users._private", "a.__newindex", "_" }
        for _, m in ipairs(names) do
            assert.is_false(allowed(g, m), m)
        end
    end)

    it("always refuses empty segments", function()
        local g = guard({ allow = { "**" } })
        for _, m in ipairs({ "", ".", "a..b", "x.", ".x", "a.b." }) do
            assert.is_false(allowed(g, m), m)
        end
    end)

    it("refuses names whose segments do not match the name pattern", function()
        local g = guard({ allow = { "**" } })
        for _, m in ipairs({ "get-user", "9lives", "a b", "a/b", "über", "x\0y", "a.b-c" }) do
            assert.is_false(allowed(g, m), m)
        end
        local dashed = guard({ pattern = "^[%l][%l%-]*$" })
        assert.is_true(allowed(dashed, "get-user"))
        assert.is_false(allowed(dashed, "GetUser"))
    end)

    it("answers 403 forbidden with a message that does not depend on whether the method exists", function()
        local g = guard({ allow = { "echo" } })
        assert.same({ "forbidden", "method 'stats' is not exported by service 'demo'" },
            { g:decide("stats") })
        assert.same({ "forbidden", "method 'nosuch' is not exported by service 'demo'" },
            { g:decide("nosuch") })
        assert.same({ "forbidden", "method '__index' is not exported by service 'demo'" },
            { g:decide("__index") })
    end)

    it("lists the exported subset of a set of names", function()
        local g = guard({ allow = { "get_*", "_x" } })
        assert.same({ "get_a", "get_b" }, g:exports({ "get_a", "_x", "put", "get_b", "__gc" }))
    end)

    it("refuses a bad option at load time", function()
        local _, err = kit.validate({ name = "guard", allow = "echo" })
        assert.equal("spec: guard.allow: expected a list, got string \"echo\"", err)
        _, err = kit.validate({ name = "guard", patern = "x" })
        assert.equal("spec: guard: unknown option 'patern'; did you mean 'pattern'?", err)
    end)

    it("decides once per method through the pipeline, then answers from the cache", function()
        local h = kit.service({ policies = { { name = "guard", allow = { "echo" } } } })
        local runs = 0
        -- the pipeline holds the module's decide: count its runs there
        local orig = h.p.decide[1][1]
        h.p.decide[1][1] = function(...)
            runs = runs + 1
            return orig(...)
        end
        for _ = 1, 10 do
            assert.equal("continue", h:request("echo").verdict)
            local r = h:request("_secret")
            assert.same({ "reject", 403 }, { r.verdict, r.code })
        end
        assert.equal(2, runs)
    end)
end)
