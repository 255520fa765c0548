-- fallback (policies/fallback.lua) in plain LuaJIT: answering failed calls from the last good
-- answer to the same call (a bounded LRU with a time to live) or from a static value.
local kit = require "spec.support.policy_kit"

local function fallback(opts, extra)
    local spec = { name = "fallback" }
    for k, v in pairs(opts or {}) do spec[k] = v end
    local policies = { spec }
    for _, p in ipairs(extra or {}) do policies[#policies + 1] = p end
    return kit.service({ upstreams = { "tcp://127.0.0.1:7001" }, policies = policies })
end

describe("fallback", function()
    it("asks the core for results (the raw bytes it caches)", function()
        assert.is_true(fallback().p.wants_result)
    end)

    it("answers a failed call with the last good answer to the same method and args", function()
        local h = fallback()
        h:call("get", { 1 }, "ok", { result = { name = "one" } })
        h:call("get", { 2 }, "ok", { result = { name = "two" } })
        local _, resp = h:call("get", { 1 }, "gateway_error", { code = 502 })
        assert.equal("respond_raw", resp.verdict)
        assert.same({ name = "one" }, resp.decoded)
        -- the exact bytes the upstream sent
        assert.equal(kit.mp.encode({ name = "one" }), resp.value)
        _, resp = h:call("get", { 3 }, "gateway_error", { code = 502 })
        assert.is_nil(resp.verdict) -- nothing cached for those args
        _, resp = h:call("other", { 1 }, "gateway_error", { code = 502 })
        assert.is_nil(resp.verdict) -- nor for that method
    end)

    it("answers only the failures listed in `on` (default: 502, 504, 530), never upstream errors", function()
        local h = fallback()
        h:call("get", {}, "ok", { result = "cached" })
        local cases = { [502] = true, [504] = true, [530] = true, [503] = false, [429] = false }
        for code, answered in pairs(cases) do
            local _, resp = h:call("get", {}, "gateway_error", { code = code })
            assert.equal(answered and "respond_raw" or nil, resp.verdict, tostring(code))
        end
        local _, resp = h:call("get", {}, "upstream_error")
        assert.is_nil(resp.verdict)
        h = fallback({ on = { "overloaded" } })
        h:call("get", {}, "ok", { result = "cached" })
        assert.is_nil(select(2, h:call("get", {}, "gateway_error", { code = 502 })).verdict)
        assert.equal("cached", select(2, h:call("get", {}, "gateway_error", { code = 503 })).decoded)
    end)

    it("forgets answers older than ttl", function()
        local h = fallback({ ttl = 10 })
        h:call("get", {}, "ok", { result = "v1" })
        h.core:advance(9)
        assert.equal("v1", select(2, h:call("get", {}, "gateway_error", { code = 504 })).decoded)
        h.core:advance(2)
        assert.is_nil(select(2, h:call("get", {}, "gateway_error", { code = 504 })).verdict)
    end)

    it("keeps at most `size` answers, dropping the least recently stored", function()
        local h = fallback({ size = 2 })
        h:call("get", { 1 }, "ok", { result = 1 })
        h:call("get", { 2 }, "ok", { result = 2 })
        h:call("get", { 1 }, "ok", { result = 11 }) -- refreshes 1
        h:call("get", { 3 }, "ok", { result = 3 })  -- drops 2
        local function cached(k)
            local _, resp = h:call("get", { k }, "gateway_error", { code = 502 })
            return resp.decoded
        end
        assert.same({ 11, nil, 3 }, { cached(1), cached(2), cached(3) })
        assert.equal(2, h:instance("fallback").n)
    end)

    it("answers with a static value when nothing is cached", function()
        local h = fallback({ value = { status = "unknown" } })
        local _, resp = h:call("get", {}, "gateway_error", { code = 502 })
        assert.same({ "respond", { status = "unknown" } }, { resp.verdict, resp.value })
        h:call("get", {}, "ok", { result = { status = "fine" } })
        _, resp = h:call("get", {}, "gateway_error", { code = 502 })
        assert.same({ status = "fine" }, resp.decoded)
    end)

    it("answers calls an open breaker refused, without sending them", function()
        local h = fallback({}, { { name = "breaker", failures = 1, cooldown = 10 } })
        h:call("get", { "k" }, "ok", { result = "good" })
        h:call("get", { "k" }, "gateway_error", { code = 504 }) -- answered from cache; opens
        local r = h:request("get", { "k" })
        assert.same({ "respond_raw", "good" }, { r.verdict, r.decoded })
        r = h:request("get", { "other" })
        assert.same({ "reject", 530 }, { r.verdict, r.code })
    end)

    it("with size = 0 keeps nothing and costs no access phase", function()
        local h = fallback({ size = 0, value = false })
        assert.equal(0, #h.p.access)
        local _, resp = h:call("get", {}, "gateway_error", { code = 502 })
        assert.same({ "respond", false }, { resp.verdict, resp.value })
    end)

    it("refuses unknown error names in `on` at load time", function()
        local _, err = kit.validate({ name = "fallback", on = { "timeout" } })
        assert.matches("fallback.on[1]: must be one of upstream_unavailable, deadline_exceeded", err, 1, true)
    end)
end)
