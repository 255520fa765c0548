-- Everything the gateway queues to a peer counts against limits.max_write_buffer: answers from
-- upstreams, and also what it writes itself (errors such as "no such service", ghost.ping,
-- sys.*, HTTP responses of the front door and of the admin endpoint). Over the limit the gateway
-- stops reading from that peer until its answers are read; a peer that reads nothing for
-- limits.write_timeout is closed. These specs pipeline tens of MiB of small requests with large
-- answers from a peer that never reads, on each kind of listener.
local h = require "spec.support.helpers"
local http = require "spec.support.http"
local mp = h.mp
local uv = require "luv"

local KiB, MiB = 1024, 1024 * 1024

-- A TCP connection to "host:port" or "tcp://host:port" that writes what it is given and never
-- reads. Fields: tcp, port (its local port).
local function deaf(addr)
    local host, port = addr:gsub("^tcp://", ""):match("^(.+):(%d+)$")
    local tcp = uv.new_tcp()
    local done, cerr = false, nil
    assert(tcp:connect(host, tonumber(port), function(e)
        done, cerr = true, e
    end))
    assert(h.await(function()
        return done
    end, h.timeout(5)), "connect: timeout")
    assert(not cerr, cerr)
    local self = { tcp = tcp, port = tcp:getsockname().port }
    function self.close()
        if not tcp:is_closing() then
            tcp:close()
        end
    end
    return self
end

-- Bytes received by our socket on local port `port` and not read yet (rx_queue, /proc/net/tcp).
-- Only an established socket counts (state 01): a TIME_WAIT one left by an earlier test on the
-- same port would read 0 for ever.
local function unread(port)
    local s = assert(h.read_file("/proc/net/tcp"))
    local want = string.format(":%04X ", port)
    for line in s:gmatch("[^\n]+") do
        local loc, st, q = line:match("^%s*%d+:%s+(%x+:%x+)%s+%x+:%x+%s+(%x+)%s+%x+:(%x+)")
        if loc and st == "01" and (loc .. " "):sub(-6) == want then
            return tonumber(q, 16)
        end
    end
    error("no established socket with local port " .. port)
end

-- Wait until the answers waiting at our local port stop growing (the gateway has stopped
-- writing to us: it filled max_write_buffer and stopped reading).
local function await_unread_settled(port)
    local last, since = -1, h.now()
    assert(h.retry(function()
        local q = unread(port)
        if q ~= last then
            last, since = q, h.now()
        end
        return q > 0 and h.now() - since > 0.3
    end, h.timeout(10), 0.05))
end

-- Wait until what we still have to send stops shrinking (the gateway has stopped reading, or
-- has read it all). Returns the bytes not sent.
local function settle(c)
    local last, since = -1, h.now()
    assert(h.retry(function()
        local q = c.tcp:get_write_queue_size()
        if q ~= last then
            last, since = q, h.now()
        end
        return h.now() - since > 1
    end, h.timeout(30), 0.05))
    return last
end

-- The flood: `total` bytes of copies of `req`, written at once by a peer that never reads;
-- then the checks every listener shares. Returns the peer.
local function flood_and_check(gw, addr, req, total, limits)
    local rss0 = assert(h.rss_kb(gw.pid))
    local c = deaf(addr)
    local n = math.floor(total / #req)
    assert(c.tcp:write(string.rep(req, n)))
    local left = settle(c)
    local rss1 = assert(h.rss_kb(gw.pid))
    local grew = (rss1 - rss0) * KiB
    -- it stopped reading: most of the requests are still ours to send
    assert.is_true(left > total / 4, string.format("the gateway read %.1f of %.1f MiB of requests "
        .. "from a peer that reads nothing", (#req * n - left) / MiB, total / MiB))
    -- and stopped answering: the answers waiting for us do not grow
    local q1 = unread(c.port)
    h.pause(0.5)
    assert.equal(q1, unread(c.port))
    local bound = limits.max_write_buffer + 8 * MiB
    if not h.san then
        assert.is_true(grew < bound,
            string.format("RSS grew by %.1f MiB (bound %.1f MiB)", grew / MiB, bound / MiB))
    end
    return c
end

describe("Answers the gateway writes itself count against limits.max_write_buffer", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    local limits = { max_write_buffer = 64 * KiB }

    it("a MessagePack client pipelining 'no such service' requests and reading nothing: the gateway "
        .. "stops reading it, its unread answers stop growing, RSS grows by less than max_write_buffer "
        .. "+ 8 MiB, others are served", function()
        local d = h.setup_demo({ config = { limits = limits } })
        assert.is_string(d.c:call("demo.echo", { "warm" }))
        local req = mp.encode({ 0, 7, "nosuch.method", {} })
        local c = flood_and_check(d.gw, d.gw.addr, req, 64 * MiB, limits)
        local t0 = h.now()
        assert.equal("fine", d.c:call("demo.echo", { "fine" }))
        assert.is_true(h.now() - t0 < 0.5)
        c.close()
    end)

    it("a MessagePack client pipelining sys.describe and reading nothing: the gateway stops reading "
        .. "it, RSS grows by less than max_write_buffer + 8 MiB", function()
        local d = h.setup_demo({ config = { limits = limits } })
        assert.is_table(d.c:call("sys.describe", {}))
        local c = flood_and_check(d.gw, d.gw.addr, mp.encode({ 0, 1, "sys.describe", {} }), 16 * MiB, limits)
        c.close()
        assert.is_table(d.c:call("sys.describe", {}))
    end)

    it("a MessagePack client that reads slowly gets every answer of 20,000 pipelined ghost.ping and "
        .. "'no such service' requests", function()
        local d = h.setup_demo({ config = { limits = limits } })
        local c = assert(h.client(d.gw.addr))
        c.handle:read_stop()
        local parts = {}
        for i = 1, 20000 do
            parts[i] = mp.encode({ 0, i, i % 2 == 0 and "ghost.ping" or "nosuch.method", {} })
        end
        assert(c:send_raw(table.concat(parts)))
        await_unread_settled(c.handle:getsockname().port)
        c.handle:read_start(function(err, data)
            if data then
                c:_feed(data)
            else
                c:_closed(err or "eof")
            end
        end)
        local ids = {}
        for i = 1, 20000 do
            ids[i] = i
        end
        local rs = assert(c:wait_all(ids, h.timeout(30)))
        for i, r in ipairs(rs) do
            if i % 2 == 0 then
                assert.equal("pong", r.result)
            else
                assert(h.is_error(r.error, 404, "no_such_service"))
                assert.equal("no such service 'nosuch'", r.error.message)
            end
        end
    end)

    it("a MessagePack client that reads nothing for limits.write_timeout is closed "
        .. "(client_closed reason=write_timeout)", function()
        local d = h.setup_demo({ config = { limits = { max_write_buffer = 64 * KiB, write_timeout = 1 } } })
        local c = deaf(d.gw.addr)
        local t0 = h.now()
        assert(c.tcp:write(string.rep(mp.encode({ 0, 1, "ghost.ping", {} }), 500000)))
        assert(d.gw:wait_log("client_closed peer=tcp://127.0.0.1:" .. c.port .. " reason=write_timeout",
            h.timeout(5)))
        assert.is_true(h.now() - t0 >= 1)
        -- the connection is gone: what we read ends (a reset: it closed with our bytes unread)
        local ended = false
        c.tcp:read_start(function(err, data)
            if not data then
                ended = err or "eof"
            end
        end)
        assert(h.await(function()
            return ended
        end, h.timeout(10)))
        assert.is_truthy(ended == "eof" or ended == "ECONNRESET", ended)
        c.close()
        assert.equal("alive", d.c:call("demo.echo", { "alive" }))
    end)

    it("the HTTP front door: a peer pipelining POSTs of unknown methods and reading nothing is no "
        .. "longer read, RSS grows by less than max_write_buffer + 8 MiB; one that reads slowly gets "
        .. "every answer", function()
        local up = assert(h.start_upstream())
        local gw = http.start(h.demo_config(up, nil, { limits = limits }))
        local req = http.post_bytes("/rpc", http.req(1, "nosuch.method", {}))
        local c = flood_and_check(gw, gw.http, req, 64 * MiB, limits)
        c.close()
        local r = assert(http.rpc(gw, http.req(2, "demo.echo", { "fine" })))
        assert.equal("fine", r.json.result)

        local raw = assert(http.raw(gw.http))
        raw.tcp:read_stop()
        assert(raw:send(string.rep(req, 5000)))
        await_unread_settled(raw.tcp:getsockname().port)
        raw.tcp:read_start(function(_, data)
            if data then
                raw.buf = raw.buf .. data
                raw:_parse()
            else
                raw.closed = true
            end
        end)
        local rs = assert(raw:wait_responses(5000, h.timeout(30)))
        assert.equal(5000, #rs)
        assert.equal(-32601, rs[5000].json.error.code)
    end)

    it("the HTTP front door: a peer that reads nothing for limits.write_timeout is closed "
        .. "(client_closed reason=write_timeout)", function()
        local up = assert(h.start_upstream())
        local gw = http.start(h.demo_config(up, nil,
            { limits = { max_write_buffer = 64 * KiB, write_timeout = 1 } }))
        local c = deaf(gw.http)
        assert(c.tcp:write(string.rep(http.post_bytes("/rpc", http.req(1, "nosuch.method", {})), 100000)))
        assert(gw:wait_log("client_closed peer=tcp://127.0.0.1:" .. c.port .. " reason=write_timeout",
            h.timeout(5)))
        c.close()
        assert.equal("fine", assert(http.rpc(gw, http.req(2, "demo.echo", { "fine" }))).json.result)
    end)

    it("the admin endpoint: a peer pipelining GET /metrics and reading nothing is no longer read, "
        .. "RSS grows by less than max_write_buffer + 8 MiB, and it is closed after write_timeout",
    function()
        local up = assert(h.start_upstream())
        local gw = http.start(h.demo_config(up, nil,
            { limits = { max_write_buffer = 64 * KiB, write_timeout = 5 } }))
        local req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        local c = flood_and_check(gw, gw.admin, req, 32 * MiB, limits)
        assert(gw:wait_log("admin_closed reason=write_timeout", h.timeout(10)))
        c.close()
        local r = assert(http.get(gw.admin_url .. "/health"))
        assert.equal(200, r.status)
    end)
end)
