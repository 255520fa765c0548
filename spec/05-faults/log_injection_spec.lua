-- Log injection: every value the gateway logs is escaped, so that what a client sends cannot
-- end a log line early, start a forged one, or fake a key: control characters become \n, \r,
-- \t or \xNN, quotes inside a quoted value become \", and a key=value value that is not one
-- plain word is quoted. See gateway/core/log.h.
local h = require "spec.support.helpers"
local uv = require "luv"

local FORGED = "2026-01-01T00:00:00.000Z error policy_stuck service=demo"

-- The gateway's log lines that match a plain substring.
local function lines_with(gw, text)
    local out = {}
    for _, l in ipairs(gw.proc.lines) do
        if l:find(text, 1, true) then out[#out + 1] = l end
    end
    return out
end

describe("Log injection", function()
    after_each(h.cleanup)

    it("a notification's method with a newline cannot write a forged log line", function()
        local d = h.setup_demo()
        assert(d.c:notify("x\n" .. FORGED, { 1 }))
        assert(d.c:notify("nosuch.x\r\n" .. FORGED, { 1 }))
        local _, err = d.c:call("nosuch.y\n" .. FORGED, {})
        assert(h.is_error(err, 400, "bad_request"))
        assert(d.gw:wait_log('method_refused .*method="nosuch%.y\\n2026', h.timeout(3)))
        assert(d.gw:wait_log('notification_dropped service=%- method="nosuch%.x\\r\\n2026',
            h.timeout(3)))
        local dropped = assert(d.gw:wait_log('notification_dropped service=%- method="x\\n2026',
            h.timeout(3)))
        assert.equal('method="x\\n' .. FORGED
            .. '" reason=bad_request why="method name contains a control character"',
            dropped:match("method=.*$"))
        for _, l in ipairs(d.gw.proc.lines) do
            assert.is_nil(l:find("^2026%-01%-01T00:00:00"), l)
            if l:find("policy_stuck", 1, true) then assert.matches('method="', l, 1, true) end
        end
    end)

    it("quotes in a quoted value are escaped as \\\", and a value cannot add a key", function()
        local d = h.setup_demo()
        assert(d.c:notify('nosuch" level="error.x', { 1 }))
        local line = assert(d.gw:wait_log("notification_dropped", h.timeout(3)))
        assert.equal('method="nosuch\\" level=\\"error.x" reason=no_such_service why="no such service"',
            line:match("method=.*$"))
        assert.equal(0, #lines_with(d.gw, ' level="error'))
    end)

    it("quotes from an upstream's 502 body are logged as \\\", not as ?", function()
        -- an HTTP upstream in this process: every request gets a 502 with a JSON body
        local body = '{"error": "db \\"main\\" is down", \'x\': 1}'
        local server = uv.new_tcp()
        assert(server:bind("127.0.0.1", 0))
        local conns = {}
        assert(server:listen(16, function()
            local conn = uv.new_tcp()
            conns[#conns + 1] = conn
            server:accept(conn)
            conn:read_start(function(_, data)
                if data and data:find("\r\n\r\n", 1, true) then
                    conn:write("HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
                        .. "Content-Length: " .. #body .. "\r\nConnection: close\r\n\r\n" .. body)
                    conn:shutdown()
                end
            end)
        end))
        local port = server:getsockname().port
        local gw = assert(h.start_gateway({ services = { x = {
            protocol = "jsonrpc-http", upstream = "http://127.0.0.1:" .. port .. "/rpc", deadline = 5 } } }))
        local c = assert(h.client(gw.addr))
        local _, err = c:call("x.anything", {})
        assert(h.is_error(err, 502, "upstream_unavailable"))
        local line = assert(gw:wait_log("upstream_http_error", h.timeout(3)))
        assert.matches([[reason="HTTP 502: {\"error\": \"db \\\"main\\\" is down\", 'x': 1}"]], line, 1, true)
        for _, conn in ipairs(conns) do if not conn:is_closing() then conn:close() end end
        server:close()
    end)

    it("bytes that are not UTF-8 are shown as \\xNN, valid UTF-8 as it is", function()
        local d = h.setup_demo()
        assert(d.c:notify("nosuch\255.caf\195\169", { 1 }))
        assert(d.c:notify("nosuch.caf\195\169", { 1 }))
        assert(d.gw:wait_log('method="nosuch\\xff%.caf\195\169" reason=bad_request', h.timeout(3)))
        assert(d.gw:wait_log('method="nosuch%.caf\195\169" reason=no_such_service', h.timeout(3)))
    end)
end)
