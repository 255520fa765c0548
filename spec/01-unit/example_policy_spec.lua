-- The user policy of README's "Write a policy" (deploy/examples/policies/maintenance.lua), unit
-- tested two ways: its phase called with a fake ctx, and loaded through policy_path into a
-- pipeline with a fake clock.
local kit = require "spec.support.policy_kit"

local PATH = "./deploy/examples/policies/?.lua"

describe("Example policy: maintenance", function()
    it("refuses calls inside the window with 503 overloaded and a retry-after, called directly", function()
        local mod = dofile("deploy/examples/policies/maintenance.lua")
        local clock = 1000
        local service = { time = function() return clock end }
        local inst = mod.new({ from = 900, to = 1100, message = "back soon" }, service)
        local ctx = kit.ctx()
        mod.access(inst, ctx)
        assert.same({ "reject", 503, "back soon", 100 },
            { ctx.verdict, ctx.code, ctx.message, ctx.retry_after })
        clock = 1100
        ctx = kit.ctx()
        mod.access(inst, ctx)
        assert.is_nil(ctx.verdict)
    end)

    it("loads through policy_path with its options validated", function()
        local s = assert(kit.validate({ name = "maintenance", from = 1, to = 2 }, PATH))
        assert.equal("down for maintenance", s.conf.message)
        local _, err = kit.validate({ name = "maintenance", from = 1 }, PATH)
        assert.equal("spec: maintenance.to: is required", err)
        _, err = kit.validate({ name = "maintenance", from = 1, to = 2, mesage = "x" }, PATH)
        assert.equal("spec: maintenance: unknown option 'mesage'; did you mean 'message'?", err)
    end)

    it("opens and closes the window on the gateway's wall clock", function()
        local core = kit.core({ wall = 5000 })
        local h = kit.service({ policies = { { name = "maintenance", from = 5010, to = 5070 } } },
            { core = core, top = { policy_path = PATH } })
        assert.equal("continue", h:request("m").verdict)
        core:advance(10)
        local r = h:request("m")
        assert.same({ "reject", 503, "down for maintenance", 60 },
            { r.verdict, r.code, r.message, r.retry_after })
        core:advance(60)
        assert.equal("continue", h:request("m").verdict)
    end)
end)
