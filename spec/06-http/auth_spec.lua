-- Authentication on the JSON-RPC front door: `Authorization: Bearer <token>` on an HTTP request
-- authenticates its calls with the same keys, tokens and throttle as ghost.auth; the services'
-- auth policies then decide as for MessagePack clients. Each HTTP request stands on its own.
local h = require "spec.support.helpers"
local http = require "spec.support.http"

local KEY_CI = "ci-key-0123456789abcdef"
local KEY_RO = "ro-key-0123456789abcdef"

local function setup(failures)
    local up = assert(h.start_upstream())
    local gw = http.start({
        auth = {
            keys = {
                [KEY_CI] = { identity = "ci", scopes = { "demo.*" } },
                [KEY_RO] = { identity = "ro", scopes = { "demo.echo" } },
            },
            failures = failures or 5,
        },
        services = {
            demo = { upstreams = { up.addr }, deadline = 5, policies = { { name = "auth" } } },
            open = { upstreams = { up.addr }, deadline = 5 },
        },
    })
    return up, gw
end

local function bearer(token)
    return { headers = { "Authorization: Bearer " .. token } }
end

describe("Bearer authentication on the HTTP front door", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("without a token, a protected service answers the policy's 401 as -32001", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, {
            http.req(1, "demo.echo", { "x" }),
            http.req(2, "open.echo", { "y" }),
        }))
        assert.equal(200, r.status)
        assert.equal(-32001, r.json[1].error.code)
        assert.same({ code = 401, type = "unauthenticated" }, r.json[1].error.data)
        assert.equal("y", r.json[2].result) -- a service without the policy is open
    end)

    it("without a token, tells the caller to send Authorization: Bearer (not ghost.auth)", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, http.req(1, "demo.echo", { "x" })))
        assert.equal(200, r.status)
        assert.equal(-32001, r.json.error.code)
        assert.equal("service 'demo' requires authentication: send the header Authorization: Bearer <token>",
            r.json.error.message)
    end)

    it("with a valid token, the request's calls run as its identity and scopes", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, http.req(1, "demo.add", { 1, 2 }), bearer(KEY_CI)))
        assert.equal(3, r.json.result)
        r = assert(http.rpc(gw, { http.req(1, "demo.echo", { "ok" }), http.req(2, "demo.add", { 1, 2 }) },
            bearer(KEY_RO)))
        assert.equal("ok", r.json[1].result)
        assert.equal(-32003, r.json[2].error.code) -- outside the key's scopes
        assert.equal("forbidden", r.json[2].error.data.type)
    end)

    it("a wrong token is answered 401 with a JSON-RPC error body, and nothing is called", function()
        local up, gw = setup()
        local before = assert(h.upstream_stats(up)).calls
        local r = assert(http.rpc(gw, http.req(1, "open.echo", { "x" }), bearer("not-a-key-at-all")))
        assert.equal(401, r.status)
        assert.matches("^Bearer", r.headers["www-authenticate"])
        assert.equal(-32001, r.json.error.code)
        assert.equal("unauthenticated", r.json.error.data.type)
        assert.equal(http.null, r.json.id)
        r = assert(http.rpc(gw, http.req(1, "open.echo", { "x" }),
            { headers = { "Authorization: Basic eDp5" } }))
        assert.equal(401, r.status)
        -- the upstream saw the stats() calls only
        assert.equal(before + 1, assert(h.upstream_stats(up)).calls)
    end)

    it("each request on a keep-alive connection is authenticated on its own", function()
        local _, gw = setup()
        local c = assert(http.raw(gw.http))
        c:send(http.post_bytes("/rpc", http.req(1, "demo.echo", { "with" }),
            "Authorization: Bearer " .. KEY_CI .. "\r\n"))
        c:send(http.post_bytes("/rpc", http.req(2, "demo.echo", { "without" })))
        c:send(http.post_bytes("/rpc", http.req(3, "demo.echo", { "again" }),
            "Authorization: Bearer " .. KEY_CI .. "\r\n"))
        local rs = assert(c:wait_responses(3))
        assert.equal("with", rs[1].json.result)
        assert.equal(-32001, rs[2].json.error.code)
        assert.equal("again", rs[3].json.result)
        assert.is_false(c.closed)
    end)

    it("wrong tokens are throttled per client address: 429 with Retry-After", function()
        local _, gw = setup(2)
        for _ = 1, 2 do
            local r = assert(http.rpc(gw, http.req(1, "open.echo", {}), bearer("wrong-wrong-wrong")))
            assert.equal(401, r.status)
        end
        local r = assert(http.rpc(gw, http.req(1, "open.echo", {}), bearer(KEY_CI)))
        assert.equal(429, r.status)
        assert.equal(-32029, r.json.error.code)
        assert.equal("rate_limited", r.json.error.data.type)
        assert.is_number(r.json.error.data.retry_after)
        assert.is_truthy(tonumber(r.headers["retry-after"]))
    end)
end)
