-- HTTP/1.1 on the front door: keep-alive, pipelined requests answered in order, bodies sent
-- with Content-Length and bounded by http.max_body, headers bounded to 16 KiB, slow requests
-- bounded by limits.message_timeout, clear 4xx answers for what is not a JSON-RPC request, and
-- the connection cap shared with MessagePack clients -- which leaves the admin listener alone.
local h = require "spec.support.helpers"
local http = require "spec.support.http"

local function setup(top)
    local up = assert(h.start_upstream())
    local gw = http.start(h.demo_config(up, nil, top))
    return up, gw
end

describe("HTTP connections of the front door", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("keeps a connection open across requests, and answers pipelined ones in order", function()
        local _, gw = setup()
        local c = assert(http.raw(gw.http))
        -- three requests in one write: the first is slow, the others fast
        c:send(http.post_bytes("/rpc", http.req(1, "demo.sleep", { 300, "first" })) ..
            http.post_bytes("/rpc", http.req(2, "demo.echo", { "second" })) ..
            http.post_bytes("/rpc", {
                http.req(3, "demo.echo", { "third" }),
                http.req(4, "demo.add", { 2, 2 }),
            }))
        local rs = assert(c:wait_responses(3, h.timeout(5)))
        assert.equal("first", rs[1].json.result)
        assert.equal("second", rs[2].json.result)
        assert.same({ "third", 4 }, { rs[3].json[1].result, rs[3].json[2].result })
        assert.equal("keep-alive", rs[3].headers.connection)
        -- and the same connection takes more
        c:send(http.post_bytes("/rpc", http.req(5, "demo.echo", { "later" })))
        rs = assert(c:wait_responses(4))
        assert.equal("later", rs[4].json.result)
        assert.is_false(c.closed)
    end)

    it("answers Connection: close, and HTTP/1.0, then closes", function()
        local _, gw = setup()
        local c = assert(http.raw(gw.http))
        local body = '{"jsonrpc":"2.0","id":1,"method":"demo.echo","params":["bye"]}'
        c:send(("POST /rpc HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s")
            :format(#body, body))
        local rs = assert(c:wait_responses(1))
        assert.equal("bye", rs[1].json.result)
        assert.equal("close", rs[1].headers.connection)
        assert(c:wait_closed())
    end)

    it("refuses a body over http.max_body with 413 and closes", function()
        local _, gw = setup({ http = { listen = "127.0.0.1:0", max_body = 1024 } })
        local big = { http.req(1, "demo.echo", { string.rep("x", 2000) }) }
        local r = assert(http.rpc(gw, big))
        assert.equal(413, r.status)
        -- within the limit is fine
        r = assert(http.rpc(gw, http.req(1, "demo.echo", { string.rep("x", 900) })))
        assert.equal(900, #r.json.result)
        -- a raw client that announces too much gets 413 before it sends the body
        local c = assert(http.raw(gw.http))
        c:send("POST /rpc HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        local rs = assert(c:wait_responses(1))
        assert.equal(413, rs[1].status)
        assert(c:wait_closed())
    end)

    it("answers bad HTTP with 400 and closes; other connections are not affected", function()
        local _, gw = setup()
        local other = assert(http.raw(gw.http))
        local c = assert(http.raw(gw.http))
        c:send("THIS IS NOT HTTP\r\n\r\n")
        local rs = assert(c:wait_responses(1))
        assert.equal(400, rs[1].status)
        assert(c:wait_closed())
        other:send(http.post_bytes("/rpc", http.req(1, "demo.echo", { "still here" })))
        assert.equal("still here", assert(other:wait_responses(1))[1].json.result)
    end)

    it("refuses chunked bodies (411), headers over 16 KiB (431), and bad Content-Length (400)", function()
        local _, gw = setup()
        local c = assert(http.raw(gw.http))
        c:send("POST /rpc HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" ..
            "2\r\n{}\r\n0\r\n\r\n")
        assert.equal(411, assert(c:wait_responses(1))[1].status)
        assert(c:wait_closed())

        c = assert(http.raw(gw.http))
        c:send("POST /rpc HTTP/1.1\r\nX-Big: " .. string.rep("a", 17 * 1024) .. "\r\n\r\n")
        assert.equal(431, assert(c:wait_responses(1))[1].status)
        assert(c:wait_closed())

        c = assert(http.raw(gw.http))
        c:send("POST /rpc HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}")
        assert.equal(400, assert(c:wait_responses(1))[1].status)
        assert(c:wait_closed())
    end)

    it("answers 404 for other paths, 405 for other methods, 415 for other content types", function()
        local _, gw = setup()
        local r = assert(http.rpc(gw, http.req(1, "demo.echo", {}),
            { url = "http://" .. gw.http .. "/other" }))
        assert.equal(404, r.status)
        r = assert(http.get(gw.rpc_url))
        assert.equal(405, r.status)
        assert.equal("POST", r.headers.allow)
        r = assert(http.rpc(gw, http.req(1, "demo.echo", {}), { content_type = "text/plain" }))
        assert.equal(415, r.status)
        -- a query string does not change the path; charset is fine
        r = assert(http.rpc(gw, http.req(1, "demo.echo", { "q" }),
            { url = gw.rpc_url .. "?x=1", content_type = "application/json; charset=utf-8" }))
        assert.equal("q", r.json.result)
    end)

    it("closes a connection whose request does not arrive in full within message_timeout", function()
        local _, gw = setup({ limits = { message_timeout = 0.3 } })
        local c = assert(http.raw(gw.http))
        c:send("POST /rpc HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n"
            .. '{"jsonrpc"')
        assert(c:wait_closed(h.timeout(3)), "the slow request was not timed out")
        assert.same({}, c.responses)
    end)

    it("closes a keep-alive connection idle for idle_timeout", function()
        local _, gw = setup({ limits = { idle_timeout = 0.3 } })
        local c = assert(http.raw(gw.http))
        c:send(http.post_bytes("/rpc", http.req(1, "demo.echo", { 1 })))
        assert(c:wait_responses(1))
        assert(c:wait_closed(h.timeout(3)), "the idle connection stayed open")
    end)

    it("max_clients: the connection over the cap is refused, the others and the admin listener work",
        function()
            local _, gw = setup({ limits = { max_clients = 3 } })
            local msgpack = assert(h.client(gw.addr)) -- MessagePack and HTTP clients share the cap
            assert.equal(1, msgpack:call("demo.echo", { 1 }))
            local conns = {}
            for i = 1, 2 do
                conns[i] = assert(http.raw(gw.http))
                conns[i]:send(http.post_bytes("/rpc", http.req(i, "demo.echo", { i })))
                assert.equal(i, assert(conns[i]:wait_responses(1))[1].json.result)
            end
            -- the 4th client: refused (503 then closed, or reset)
            local over = http.raw(gw.http)
            if over then
                over:send(http.post_bytes("/rpc", http.req(9, "demo.echo", { 9 })))
                assert(over:wait_closed(h.timeout(3)), "the connection over the cap was not closed")
                for _, r in ipairs(over.responses) do
                    assert.equal(503, r.status)
                end
            end
            -- the admin endpoint answers, over and over, on more connections than the cap
            for _ = 1, 5 do
                local r = assert(http.get(gw.admin_url .. "/health"))
                assert.equal(200, r.status)
            end
            local m = assert(http.get(gw.admin_url .. "/metrics"))
            assert.equal(3, http.sample(http.metrics(m.body), "ghostgate_clients"))
            -- the clients inside the cap still work
            for i = 1, 2 do
                conns[i]:send(http.post_bytes("/rpc", http.req(i, "demo.echo", { i * 10 })))
                assert.equal(i * 10, assert(conns[i]:wait_responses(2))[2].json.result)
            end
            assert.equal(2, msgpack:call("demo.echo", { 2 }))
        end)
end)
