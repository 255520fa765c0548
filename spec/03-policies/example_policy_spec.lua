-- The policy README's "Write a policy" shows (deploy/examples/policies/maintenance.lua),
-- loaded by a real gateway from policy_path as a user would load it.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"
local uv = require "luv"

local function setup(from, to)
    local up = assert(h.start_upstream())
    local gw = e2e.gateway(([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    policy_path = %q,
    services = {
        demo = { upstream = "%%UP1%%", deadline = 2,
                 policies = { policy "maintenance" { from = %d, to = %d, message = "back at 6" } } },
        other = { upstream = "%%UP1%%", deadline = 2 },
    },
}]]):format(uv.cwd() .. "/deploy/examples/policies/?.lua", from, to), { up = { up } })
    return up, assert(h.client(gw.addr))
end

describe("Example policy: maintenance (end to end)", function()
    after_each(h.cleanup)

    it("is in README's \"Write a policy\" verbatim", function()
        local readme = assert(h.read_file("README.md"))
        local text = assert(h.read_file("deploy/examples/policies/maintenance.lua"))
        assert.is_truthy(readme:find("```lua\n" .. text .. "```", 1, true),
            "deploy/examples/policies/maintenance.lua is not in README.md")
    end)

    it("refuses calls during the window with 503 overloaded and when to come back", function()
        local now = os.time()
        local up, c = setup(now - 60, now + 3600)
        local _, err = c:call("demo.echo", { 1 })
        assert(h.is_error(err, 503, "overloaded"))
        assert.equal("back at 6", err.message)
        assert.is_true(err.retry_after > 3590 and err.retry_after <= 3600, tostring(err.retry_after))
        assert.equal(1, c:call("other.echo", { 1 }))
        assert.equal(1, e2e.seen(up))
    end)

    it("lets calls through outside the window", function()
        local now = os.time()
        local _, c = setup(now + 3600, now + 7200)
        assert.equal("open", c:call("demo.echo", { "open" }))
    end)
end)
