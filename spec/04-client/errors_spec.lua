-- Error objects of the Lua client carry what the gateway said: a refusal that says when to come
-- back (429 rate_limited, 530 circuit_open, a policy's 503) has err.retry_after in seconds, as
-- docs/client.md lists it, besides the raw map in err.data.
local h = require "spec.support.helpers"

local USERS = "spec/04-client/backends/users.lua"

describe("An error object", function()
    local gw

    after_each(h.cleanup)

    it("has retry_after when the gateway says when to retry (429 rate_limited)", function()
        local f = h.setup_ghost({
            users = { script = USERS, policies = { { name = "ratelimit", rate = 0.5, burst = 1 } } },
            free = USERS,
        })
        gw = f.gw
        assert.equal("a", gw.users.echo("a"))
        local ok, err = pcall(gw.users.echo, "b")
        assert.is_false(ok)
        assert.equal(429, err.code)
        assert.equal("rate_limited", err.type)
        assert.equal("number", type(err.retry_after))
        assert.is_true(err.retry_after > 0 and err.retry_after <= 2, tostring(err.retry_after))
        assert.equal(err.data.retry_after, err.retry_after)
        -- and errors without one have none
        local _, none = gw:try().free.no_such_thing()
        assert.equal("no_such_method", none.type)
        assert.is_nil(none.retry_after)
    end)
end)
