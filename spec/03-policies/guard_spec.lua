-- guard, end to end: which methods of a service a client can reach through the gateway. Counts
-- come from the upstream itself: a refused call never reaches it.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"

describe("guard (end to end)", function()
    after_each(h.cleanup)

    local function setup(policies)
        local up = assert(h.start_upstream())
        local gw = e2e.gateway([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    services = {
        demo = { upstream = "%UP1%", deadline = 2, policies = { ]] .. policies .. [[ } },
    },
}]], { up = { up } })
        return up, assert(h.client(gw.addr))
    end

    it("exports only the listed names and globs; everything else is 403 forbidden", function()
        local up, c = setup([[guard { allow = { "echo", "ad?", "get_*" } }]])
        assert.equal("x", c:call("demo.echo", { "x" }))
        assert.equal(5, c:call("demo.add", { 2, 3 }))
        local _, err = c:call("demo.get_nothing", {})
        -- allowed by the guard, unknown upstream: the upstream's own error
        assert.same({ code = 404, type = "no_such_method", message = "no such method 'get_nothing'" }, err)
        for _, m in ipairs({ "sleep", "stats", "drop", "echo2", "get_a.b" }) do
            _, err = c:call("demo." .. m, { 1 })
            assert(h.is_error(err, 403, "forbidden"))
            assert.equal(("method '%s' is not exported by service 'demo'"):format(m), err.message)
        end
        assert.equal(3, e2e.seen(up))
    end)

    it("answers alike for a method that exists upstream and one that does not", function()
        local _, c = setup([[guard { allow = { "echo" } }]])
        local _, exists = c:call("demo.stats", {})
        local _, missing = c:call("demo.stuts", {})
        local function refusal(m)
            return { code = 403, type = "forbidden",
                     message = ("method '%s' is not exported by service 'demo'"):format(m) }
        end
        assert.same(refusal("stats"), exists)
        assert.same(refusal("stuts"), missing)
    end)

    it("always refuses private, metamethod-like and malformed names, even with no allow list", function()
        local up, c = setup([[guard {}]])
        assert.equal(1, c:call("demo.echo", { 1 }))
        for _, m in ipairs({ "_echo", "__index", "__gc", "echo-x", "9echo", "a._b" }) do
            local _, err = c:call("demo." .. m, { 1 })
            assert(h.is_error(err, 403, "forbidden"))
        end
        -- an empty segment is refused by the core before any policy (docs/protocol.md)
        for _, m in ipairs({ "echo.", "a..b" }) do
            local _, err = c:call("demo." .. m, { 1 })
            assert(h.is_error(err, 400, "bad_request"))
        end
        assert.equal(1, e2e.seen(up))
        assert.is_false(c.closed)
    end)

    it("lets deny win over allow", function()
        local up, c = setup([[guard { allow = { "**" }, deny = { "drop", "st*" } }]])
        for _, m in ipairs({ "drop", "stats" }) do
            local _, err = c:call("demo." .. m, {})
            assert(h.is_error(err, 403, "forbidden"))
        end
        assert.equal(2, c:call("demo.echo", { 2 }))
        assert.equal(1, e2e.seen(up))
    end)
end)
