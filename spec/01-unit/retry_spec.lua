-- retry (policies/retry.lua) in plain LuaJIT: which failed calls are sent again, how long the
-- gateway waits first, and the budget that keeps retries from multiplying an outage.
local kit = require "spec.support.policy_kit"

local function retry(opts, service)
    local spec = { name = "retry" }
    for k, v in pairs(opts or {}) do spec[k] = v end
    local svc = { policies = { spec } }
    for k, v in pairs(service or {}) do svc[k] = v end
    return kit.service(svc)
end

-- The response phase of one call of `method` that failed with `code` on attempt `attempt`.
local function outcome(h, method, kind, o)
    local r = h:request(method)
    assert.equal("continue", r.verdict)
    return h:response(r, kind, o)
end

describe("retry", function()
    it("makes the core keep a copy of each request (so that it can be sent again)", function()
        assert.is_true(retry().p.keeps_request)
    end)

    it("retries any method when the call provably never reached the upstream", function()
        local h = retry()
        local r = outcome(h, "create_order", "gateway_error", { code = 502, sent = false })
        assert.equal("retry", r.verdict)
        assert.is_true(r.value >= 0 and r.value <= 0.05)
    end)

    it("does not retry a call that reached the upstream unless its method is idempotent", function()
        local h = retry({ idempotent = { "get_*" } }, { idempotent = { "list" } })
        assert.is_nil(outcome(h, "create_order", "gateway_error", { code = 502, sent = true }).verdict)
        assert.equal("retry", outcome(h, "get_user", "gateway_error", { code = 502, sent = true }).verdict)
        assert.equal("retry", outcome(h, "list", "gateway_error", { code = 502, sent = true }).verdict)
    end)

    it("never retries answers, errors the upstream returned, timeouts or other gateway errors", function()
        local h = retry({ idempotent = { "**" } })
        assert.is_nil(outcome(h, "get", "ok").verdict)
        assert.is_nil(outcome(h, "get", "upstream_error").verdict)
        -- the deadline is the whole call's: there is no time left to retry
        assert.is_nil(outcome(h, "get", "gateway_error", { code = 504, sent = true }).verdict)
        assert.is_nil(outcome(h, "get", "gateway_error", { code = 503, sent = false }).verdict)
        assert.is_nil(outcome(h, "get", "gateway_error", { code = 530, sent = false }).verdict)
    end)

    it("stops after `attempts` attempts in all", function()
        local h = retry({ attempts = 3 })
        local r = h:request("m")
        for attempt = 1, 2 do
            assert.equal("retry", h:response(r, "gateway_error", { code = 502, sent = false,
                                                                   attempt = attempt }).verdict)
        end
        assert.is_nil(h:response(r, "gateway_error", { code = 502, sent = false, attempt = 3 }).verdict)
    end)

    it("waits a random time in [0, min(max_backoff, backoff * 2^(attempt-1))] (full jitter)", function()
        local h = retry({ attempts = 10, backoff = 0.1, max_backoff = 0.5, budget = 10 })
        for attempt, cap in ipairs({ 0.1, 0.2, 0.4, 0.5, 0.5 }) do
            local lo, hi, distinct = math.huge, 0, {}
            for _ = 1, 200 do
                outcome(h, "m", "ok") -- earns the budget back
                local r = h:request("m")
                local d = h:response(r, "gateway_error",
                    { code = 502, sent = false, attempt = attempt }).value
                lo, hi = math.min(lo, d), math.max(hi, d)
                distinct[d] = true
            end
            assert.is_true(lo >= 0 and hi <= cap,
                ("attempt %d: [%g, %g], cap %g"):format(attempt, lo, hi, cap))
            assert.is_true(hi > cap * 0.8 and lo < cap * 0.2, "the whole range is used")
            local n = 0
            for _ in pairs(distinct) do n = n + 1 end
            assert.is_true(n > 150, "waits are random")
        end
    end)

    it("keeps retries within the budget: a reserve of 10, then `budget` per call made", function()
        local h = retry({ budget = 0.5 })
        local function failed_retry()
            local r = h:request("m")
            return h:response(r, "gateway_error", { code = 502, sent = false, attempt = 2 }).verdict
        end
        for i = 1, 10 do assert.equal("retry", failed_retry(), "retry " .. i) end
        assert.is_nil(failed_retry())
        -- two first attempts earn one retry
        outcome(h, "m", "ok")
        outcome(h, "m", "ok")
        assert.equal("retry", failed_retry())
        assert.is_nil(failed_retry())
    end)

    it("refuses bad options at load time", function()
        local _, err = kit.validate({ name = "retry", attempts = 11 })
        assert.equal("spec: retry.attempts: must be at most 10", err)
        _, err = kit.validate({ name = "retry", idempotent = "get_*" })
        assert.equal("spec: retry.idempotent: expected a list, got string \"get_*\"", err)
    end)
end)
