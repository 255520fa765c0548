-- The JSON-RPC 2.0 front door (config `http`): clients without a MessagePack library POST JSON-RPC
-- to http.path; calls are routed like MessagePack-RPC calls, with the same policies, and answered
-- in JSON. Every request here is sent by curl, as a user would.
local h = require "spec.support.helpers"
local http = require "spec.support.http"

local function setup(service, top)
    local up = assert(h.start_upstream())
    local gw = http.start(h.demo_config(up, service, top))
    return up, gw
end

describe("JSON-RPC over HTTP", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("answers a single request with its result and id", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, http.req(7, "demo.echo", { "hello" })))
        assert.equal(200, r.status)
        assert.matches("^application/json", r.headers["content-type"])
        assert.same({ jsonrpc = "2.0", result = "hello", id = 7 }, r.json)

        r = assert(http.rpc(gw, http.req("call-1", "demo.add", { 2, 40 })))
        assert.same({ jsonrpc = "2.0", result = 42, id = "call-1" }, r.json)
        -- a null id is an id: the answer carries it
        r = assert(http.rpc(gw, '{"jsonrpc":"2.0","id":null,"method":"demo.echo","params":[1]}'))
        assert.equal(1, r.json.result)
        assert.equal(http.null, r.json.id)
    end)

    it("passes params given by name as one argument, the object", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, http.req(1, "demo.echo", { user = "ada", tags = { "x", "y" } })))
        assert.same({ user = "ada", tags = { "x", "y" } }, r.json.result)
        -- no params: no arguments
        r = assert(http.rpc(gw, { jsonrpc = "2.0", id = 2, method = "demo.echo" }))
        assert.equal(http.null, r.json.result)
    end)

    it("answers a batch in request order once every call of it is answered", function()
        local _, gw = setup()
        local t0 = h.now()
        local r = assert(http.rpc(gw, {
            http.req(1, "demo.sleep", { 300, "slow" }),
            http.req(2, "demo.echo", { "fast" }),
            { jsonrpc = "2.0", method = "demo.echo", params = { "a notification" } },
            http.req(3, "demo.add", { 1, 2 }),
        }))
        assert.is_true(h.now() - t0 >= 0.3, "answered before the slow call")
        assert.equal(200, r.status)
        assert.same({
            { jsonrpc = "2.0", result = "slow", id = 1 },
            { jsonrpc = "2.0", result = "fast", id = 2 },
            { jsonrpc = "2.0", result = 3, id = 3 },
        }, r.json)
    end)

    it("answers a notification, and a batch of only notifications, with 204 and no body", function()
        local up, gw = setup()
        local r = assert(http.rpc(gw, { jsonrpc = "2.0", method = "demo.echo", params = { 1 } }))
        assert.equal(204, r.status)
        assert.equal("", r.body)
        r = assert(http.rpc(gw, {
            { jsonrpc = "2.0", method = "demo.echo", params = { 2 } },
            { jsonrpc = "2.0", method = "demo.echo", params = { 3 } },
        }))
        assert.equal(204, r.status)
        -- they reached the upstream, as MessagePack notifications
        assert(h.retry(function()
            local s = h.upstream_stats(up)
            return s and s.notifications >= 3, "upstream saw fewer than 3 notifications"
        end))
    end)

    it("answers an empty batch with one invalid-request error", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, "[]"))
        assert.equal(200, r.status)
        assert.equal(-32600, r.json.error.code)
        assert.equal(http.null, r.json.id)
    end)

    it("answers malformed JSON with a parse error (-32700)", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, '{"jsonrpc": "2.0", "method": "demo.echo", '))
        assert.equal(200, r.status)
        assert.equal(-32700, r.json.error.code)
        assert.matches("parse error", r.json.error.message)
        assert.equal(http.null, r.json.id)
        -- duplicate keys would be a silent choice: they are a parse error too
        r = assert(http.rpc(gw, '{"jsonrpc":"2.0","id":1,"id":2,"method":"demo.echo"}'))
        assert.equal(-32700, r.json.error.code)
    end)

    it("answers each invalid element of a batch with -32600, the others normally", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, '[1, {"jsonrpc":"1.0","id":2,"method":"demo.echo"},' ..
            '{"jsonrpc":"2.0","id":3,"method":5},{"jsonrpc":"2.0","id":{},"method":"demo.echo"},' ..
            '{"jsonrpc":"2.0","id":5,"method":"demo.echo","params":["ok"]}]'))
        assert.equal(5, #r.json)
        assert.equal(-32600, r.json[1].error.code)
        assert.equal(http.null, r.json[1].id)
        assert.equal(-32600, r.json[2].error.code)
        assert.equal(2, r.json[2].id)
        assert.equal(-32600, r.json[3].error.code)
        assert.equal(3, r.json[3].id)
        assert.equal(-32600, r.json[4].error.code) -- an object is not an id
        assert.equal(http.null, r.json[4].id)
        assert.same({ jsonrpc = "2.0", result = "ok", id = 5 }, r.json[5])
    end)

    it("maps errors: no such service -32601, bad params -32602, upstream errors -32000", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, {
            http.req(1, "nope.x", {}),
            http.req(2, "demo.echo", 5),
            http.req(3, "demo.fail", { "card declined" }),
            http.req(4, "demo.fail", { { 1, 2 } }),
            http.req(5, "demo.echo", { { ["$bin"] = "not base64!" } }),
            http.req(6, "demo.nosuchmethod", {}),
        }))
        local e = {}
        for i, v in ipairs(r.json) do
            assert.equal(i, v.id)
            assert.is_nil(v.result)
            e[i] = v.error
        end
        assert.same({ code = -32601, message = "no such service 'nope'",
                      data = { code = 404, type = "no_such_service" } }, e[1])
        assert.equal(-32602, e[2].code)
        -- the upstream's error: its message field as message, the whole value as data
        assert.same({ code = -32000, message = "card declined",
                      data = { code = 1, type = "app_error", message = "card declined" } }, e[3])
        -- no text message in it: the message is the error rendered as JSON
        assert.equal(-32000, e[4].code)
        assert.same({ code = 1, type = "app_error", message = { 1, 2 } }, e[4].data)
        assert.same(e[4].data, require("cjson").decode(e[4].message))
        -- a tagged value that is not what its tag says is invalid params, not a guess
        assert.equal(-32602, e[5].code)
        assert.matches("invalid params", e[5].message)
        assert.equal(-32000, e[6].code) -- the upstream does not know the method
        assert.equal("no_such_method", e[6].data.type)
    end)

    it("maps gateway errors to codes in -32000..-32099 with the gateway's code and type as data", function()
        local _, gw = setup({ deadline = 0.2 })
        local r = assert(http.rpc(gw, http.req(1, "demo.hang", {})))
        assert.same({ code = -32054, message = "deadline of 0.200 s exceeded",
                      data = { code = 504, type = "deadline_exceeded" } }, r.json.error)
        -- an upstream that is not there: 502 upstream_unavailable
        local gw2 = http.start(h.demo_config(nil, { upstreams = { "tcp://127.0.0.1:" .. h.unused_port() } }))
        r = assert(http.rpc(gw2, http.req(1, "demo.echo", { 1 })))
        assert.equal(-32052, r.json.error.code)
        assert.equal("upstream_unavailable", r.json.error.data.type)
    end)

    it("turns a result JSON cannot carry into a -32603 error that says why", function()
        local be = assert(h.start_backend([[
local ghost = require "ghost"
local m = {}
function m.latin1() return "caf\233" end
function m.fine() return "caf\195\169" end
ghost.serve(m, arg[1])
]], { "tcp://127.0.0.1:0" }))
        local gw = http.start({ services = { b = { upstream = be.addr } } })
        local r = assert(http.rpc(gw, { http.req(1, "b.latin1", {}), http.req(2, "b.fine", {}) }))
        assert.equal(-32603, r.json[1].error.code)
        assert.matches("cannot be represented in JSON", r.json[1].error.message)
        assert.matches("UTF%-8", r.json[1].error.message)
        assert.equal("café", r.json[2].result)
    end)

    it("answers the gateway's own ping, and refuses its other methods with -32601", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, { http.req(1, "ghost.ping", {}), http.req(2, "sys.ping", {}),
                                        http.req(3, "ghost.auth", { "x" }) }))
        assert.equal("pong", r.json[1].result)
        assert.equal("pong", r.json[2].result)
        assert.equal(-32601, r.json[3].error.code)
    end)

    it("runs the service's policies: a guard refuses with -32003 forbidden", function()
        local _, gw = setup({ policies = { { name = "guard", allow = { "echo" } } } })
        local r = assert(http.rpc(gw, {
            http.req(1, "demo.echo", { "in" }),
            http.req(2, "demo.add", { 1, 2 }),
        }))
        assert.equal("in", r.json[1].result)
        assert.equal(-32003, r.json[2].error.code)
        assert.equal("forbidden", r.json[2].error.data.type)
    end)

    it("refuses a batch larger than limits.max_inflight_per_client with one -32600 error", function()
        local _, gw = setup(nil, { limits = { max_inflight_per_client = 4 } })
        local batch = {}
        for i = 1, 5 do
            batch[i] = http.req(i, "demo.echo", { i })
        end
        local r = assert(http.rpc(gw, batch))
        assert.equal(-32600, r.json.error.code)
        assert.matches("at most 4", r.json.error.message)
        batch[5] = nil
        r = assert(http.rpc(gw, batch))
        assert.equal(4, #r.json)
    end)
end)
