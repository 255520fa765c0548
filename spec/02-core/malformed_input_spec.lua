-- Malformed input: the gateway answers an error when it can tell which msgid to answer, and
-- otherwise closes the connection. Framing errors (not MessagePack, too large, too deep) close
-- the connection after the error. None of it crashes the gateway, costs it memory, or affects
-- other clients.
local h = require "spec.support.helpers"
local mp = h.mp

local function str(s)
    return mp.encode(s)
end

-- [0, msgid, "demo.echo", <params bytes>] built by hand.
local function request_with_params(msgid, params_bytes)
    return "\148\0" .. mp.encode(msgid) .. str("demo.echo") .. params_bytes
end

describe("Malformed input", function()
    local up, gw

    local function start(limits)
        up = assert(h.start_upstream())
        gw = assert(h.start_gateway(h.demo_config(up, nil, { limits = limits })))
    end

    -- The gateway is alive and answers a new client.
    local function assert_serving()
        local c = assert(h.client(gw.addr))
        local res, err = c:call("demo.echo", { "alive" })
        assert.is_nil(err)
        assert.equal("alive", res)
        c:close()
    end

    after_each(h.cleanup)

    it("waits for a message that arrives one byte at a time", function()
        start()
        local c = assert(h.client(gw.addr))
        local bytes = mp.encode({ 0, 5, "demo.echo", { "piecewise" } })
        for i = 1, #bytes do
            assert(c:send_raw(bytes:sub(i, i)))
        end
        local r = assert(c:wait_response(5))
        assert.equal("piecewise", r.result)
    end)

    it("survives half a message followed by a close", function()
        start()
        local bytes = mp.encode({ 0, 1, "demo.echo", { string.rep("x", 100) } })
        for _ = 1, 5 do
            local c = assert(h.client(gw.addr))
            assert(c:send_raw(bytes:sub(1, 60)))
            c:close()
        end
        assert_serving()
    end)

    it("answers 413 too_large and closes the connection when a message exceeds max_message_size", function()
        start({ max_message_size = 1024 })
        local c = assert(h.client(gw.addr))
        assert.equal("small", c:call("demo.echo", { "small" }))
        local id = assert(c:request("demo.echo", { string.rep("x", 4096) }))
        local r = assert(c:wait_response(id, 3))
        assert(h.is_error(r.error, 413, "too_large"))
        assert.is_nil(r.result)
        assert(c:wait_closed(3))
        assert_serving()
    end)

    it("closes the connection on bytes that are not MessagePack (0xc1)", function()
        start()
        local c = assert(h.client(gw.addr))
        assert(c:send_raw("\193\193\193\193\193\193\193\193"))
        assert(c:wait_closed(3))
        assert.same({}, c.order)
        assert_serving()
    end)

    it("answers 400 bad_request and closes when the params are not MessagePack", function()
        start()
        local c = assert(h.client(gw.addr))
        assert(c:send_raw(request_with_params(3, "\145\193")))
        assert(c:wait_closed(3))
        local r = c.responses[3]
        assert.is_table(r, "expected an error response for msgid 3 before the close")
        assert(h.is_error(r.error, 400, "bad_request"))
        assert_serving()
    end)

    for _, frame in ipairs({ "\221\255\0\0\0", "\223\255\0\0\0" }) do
        it("closes the connection on a frame claiming billions of entries: " .. mp.hex(frame), function()
            start()
            local rss0 = assert(h.rss_kb(gw.pid))
            for _ = 1, 3 do
                local c = assert(h.client(gw.addr))
                assert(c:send_raw(frame))
                assert(c:wait_closed(3))
                assert.same({}, c.order)
            end
            -- same claim inside the params of a request: its msgid is known
            local c = assert(h.client(gw.addr))
            assert(c:send_raw(request_with_params(9, frame)))
            assert(c:wait_closed(3))
            assert.is_table(c.responses[9], "expected 413 for msgid 9 before the close")
            assert(h.is_error(c.responses[9].error, 413, "too_large"))
            local rss1 = assert(h.rss_kb(gw.pid))
            assert.is_true(rss1 - rss0 < 16 * 1024,
                string.format("RSS went from %d to %d KiB", rss0, rss1))
            assert_serving()
        end)
    end

    it("refuses 10,000 levels of nesting: 400 bad_request if the msgid was read, then closed", function()
        start()
        local deep = string.rep("\145", 10000) .. "\192"
        local c = assert(h.client(gw.addr))
        assert(c:send_raw(request_with_params(4, "\145" .. deep)))
        assert(c:wait_closed(3))
        local r = c.responses[4]
        assert.is_table(r, "expected 400 for msgid 4 before the close")
        assert(h.is_error(r.error, 400, "bad_request"))
        assert.is_nil(r.result)
        -- and without an envelope around it
        c = assert(h.client(gw.addr))
        assert(c:send_raw(deep))
        assert(c:wait_closed(3))
        assert.same({}, c.order)
        assert_serving()
    end)

    it("closes the connection when the msgid cannot be read: [0, 'x', 'm', []], -1, 2^32", function()
        start()
        local c = assert(h.client(gw.addr))
        assert(c:send_raw(mp.encode({ 0, "x", "m", {} })))
        assert(c:wait_closed(3))
        assert.same({}, c.order)
        c = assert(h.client(gw.addr))
        assert(c:send_raw(mp.encode({ 0, 2 ^ 32, "demo.echo", {} }))) -- msgid is 32 bits
        assert(c:wait_closed(3))
        c = assert(h.client(gw.addr))
        assert(c:send_raw(mp.encode({ 0, -1, "demo.echo", {} })))
        assert(c:wait_closed(3))
        c = assert(h.client(gw.addr))
        assert(c:send_raw(mp.encode("not an envelope")))
        assert(c:wait_closed(3))
        assert_serving()
    end)

    it("answers 400 bad_request to a method that is not a string and keeps the connection", function()
        start()
        local c = assert(h.client(gw.addr))
        assert(c:send_raw(mp.encode({ 0, 7, 42, {} })))
        local r = assert(c:wait_response(7, 3))
        assert(h.is_error(r.error, 400, "bad_request"))
        assert.is_nil(r.result)
        assert.equal("usable", c:call("demo.echo", { "usable" }))
    end)

    it("answers 400 bad_request when params are not an array", function()
        start()
        local c = assert(h.client(gw.addr))
        assert(c:send_raw(mp.encode({ 0, 8, "demo.echo", "not an array" })))
        local r = assert(c:wait_response(8, 3))
        assert(h.is_error(r.error, 400, "bad_request"))
        assert(c:send_raw(mp.encode({ 0, 9, "demo.echo", mp.map({ a = 1 }) })))
        r = assert(c:wait_response(9, 3))
        assert(h.is_error(r.error, 400, "bad_request"))
        assert.equal("usable", c:call("demo.echo", { "usable" }))
    end)

    it("answers 400 bad_request to a request envelope of the wrong length", function()
        start()
        local c = assert(h.client(gw.addr))
        assert(c:send_raw(mp.encode({ 0, 10, "demo.echo" })))
        local r = assert(c:wait_response(10, 3))
        assert(h.is_error(r.error, 400, "bad_request"))
        assert(c:send_raw(mp.encode({ 0, 11, "demo.echo", {}, "extra" })))
        r = assert(c:wait_response(11, 3))
        assert(h.is_error(r.error, 400, "bad_request"))
        assert.equal("usable", c:call("demo.echo", { "usable" }))
    end)

    it("answers 400 bad_request to an empty method", function()
        start()
        local c = assert(h.client(gw.addr))
        assert(c:send_raw(mp.encode({ 0, 12, "", {} })))
        local r = assert(c:wait_response(12, 3))
        assert(h.is_error(r.error, 400, "bad_request"))
        assert.equal("usable", c:call("demo.echo", { "usable" }))
    end)

    it("ignores a response sent by a client and keeps the connection", function()
        start()
        local c = assert(h.client(gw.addr))
        assert(c:send_raw(mp.encode({ 1, 13, mp.null, "unsolicited" })))
        assert.equal("usable", c:call("demo.echo", { "usable" }))
        assert.is_nil(c.responses[13])
        assert.is_false(c.closed)
    end)
end)
