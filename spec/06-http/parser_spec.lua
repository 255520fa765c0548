-- The HTTP parser is strict where a proxy in front could read the same bytes differently
-- (request smuggling): a header name followed by whitespace before its ':' ("Content-Length :
-- 5") and head lines ending in a bare LF (or a CR without LF) are refused with 400, and the
-- connection is closed.
-- A request body is buffered as its bytes arrive, never reserved up front at the size its
-- Content-Length claims.
local h = require "spec.support.helpers"
local http = require "spec.support.http"

local KiB, MiB = 1024, 1024 * 1024

local function setup(top)
    local up = assert(h.start_upstream())
    local gw = http.start(h.demo_config(up, nil, top))
    return up, gw
end

-- Send bytes on a fresh connection; return its one answer once the gateway has closed it.
local function refused(addr, bytes)
    local c = assert(http.raw(addr))
    assert(c:send(bytes))
    local rs = assert(c:wait_responses(1))
    assert(c:wait_closed())
    return rs[1]
end

-- The gateway's virtual memory size in KiB (/proc).
local function vm_kb(pid)
    local s = assert(h.read_file("/proc/" .. pid .. "/status"))
    return tonumber(s:match("VmSize:%s*(%d+)%s*kB"))
end

local body = '{"jsonrpc":"2.0","id":1,"method":"demo.echo","params":["x"]}'

describe("The HTTP parser", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("refuses whitespace between a header name and ':' with 400 and closes (Content-Length : N "
        .. "would be a length to us and none to a proxy)", function()
        local _, gw = setup()
        local space = "whitespace between a header name and ':'\n"
        local cases = {
            { "Content-Length : " .. #body, space },
            { "X-Other : 1\r\nContent-Length: " .. #body, space },
            { "Content-Length\t: " .. #body, "invalid character in header\n" }, -- the parser's own
        }
        for _, case in ipairs(cases) do
            local r = refused(gw.http, "POST /rpc HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                .. case[1] .. "\r\n\r\n" .. body)
            assert.equal(400, r.status)
            assert.equal(case[2], r.body)
        end
        assert(gw:wait_log('http_bad_request peer=tcp://127.0.0.1:%d+ status=400 reason="whitespace between '
            .. "a header name and ':'\""))
        -- the admin endpoint reads HTTP the same way
        local r = refused(gw.admin, "GET /health HTTP/1.1\r\nHost : gw\r\n\r\n")
        assert.equal(400, r.status)
        -- a space inside a value, or after the ':', is fine
        local ok = assert(http.raw(gw.http))
        ok:send("POST /rpc HTTP/1.1\r\nHost:  gw\r\nX-A: b : c\r\nContent-Type: application/json\r\n"
            .. "Content-Length:" .. #body .. "\r\n\r\n" .. body)
        assert.equal("x", assert(ok:wait_responses(1))[1].json.result)
    end)

    it("refuses head lines that end in a bare LF, or a CR without LF, with 400 and closes", function()
        local _, gw = setup()
        local heads = {
            "POST /rpc HTTP/1.1\nHost: gw\nContent-Type: application/json\nContent-Length: " .. #body
                .. "\n\n",
            "POST /rpc HTTP/1.1\r\nHost: gw\nContent-Type: application/json\r\nContent-Length: " .. #body
                .. "\r\n\r\n",
            "POST /rpc HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: " .. #body
                .. "\r\n\n",
        }
        for _, head in ipairs(heads) do
            local r = refused(gw.http, head .. body)
            assert.equal(400, r.status)
            assert.equal("bare LF in the request head: lines end with CRLF\n", r.body)
        end
        assert.equal(400, refused(gw.admin, "GET /health HTTP/1.1\nHost: gw\n\n").status)
        -- nor a CR on its own, which the parser would take for a line end
        local r = refused(gw.http, "POST /rpc HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            .. "Content-Length: " .. #body .. "\r\n\r" .. body)
        assert.equal(400, r.status)
        assert.equal("CR without LF in the request head: lines end with CRLF\n", r.body)
        -- a second, pipelined request with a bare LF is refused after the first is answered
        local c = assert(http.raw(gw.http))
        c:send(http.post_bytes("/rpc", body) .. "GET /rpc HTTP/1.1\nHost: gw\n\n")
        local rs = assert(c:wait_responses(2))
        assert.equal("x", rs[1].json.result)
        assert.equal(400, rs[2].status)
        assert(c:wait_closed())
    end)

    it("bodies with LFs, heads split in any place, and pipelined requests still work", function()
        local _, gw = setup()
        local lf_body = '{"jsonrpc":"2.0",\n"id":1,\n"method":"demo.echo","params":["a\\nb"]}\n'
        local bytes = http.post_bytes("/rpc", lf_body) .. http.post_bytes("/rpc", body)
        local c = assert(http.raw(gw.http))
        for i = 1, #bytes, 7 do
            c:send(bytes:sub(i, i + 6))
        end
        local rs = assert(c:wait_responses(2))
        assert.equal("a\nb", rs[1].json.result)
        assert.equal("x", rs[2].json.result)
        -- empty lines before a request are skipped, as before
        c:send("\r\n" .. http.post_bytes("/rpc", body))
        assert.equal("x", assert(c:wait_responses(3))[3].json.result)
    end)

    it("grows a body buffer as bytes arrive: 50 connections claiming 8 MiB bodies and sending 1 KiB "
        .. "add less than 16 MiB of virtual memory", function()
        local _, gw = setup({ http = { listen = "127.0.0.1:0", max_body = 8 * MiB } })
        -- warm up: pools and one request read in pieces
        local w = assert(http.raw(gw.http))
        local warm = http.post_bytes("/rpc", body)
        w:send(warm:sub(1, 80))
        w:send(warm:sub(81))
        assert(w:wait_responses(1))
        local vm0 = vm_kb(gw.pid)
        local conns = {}
        for i = 1, 50 do
            local c = assert(http.raw(gw.http))
            assert(c:send("POST /rpc HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                .. "Content-Length: " .. 8 * MiB .. "\r\n\r\n" .. string.rep(" ", KiB)))
            conns[i] = c
        end
        -- every connection's bytes have been read: a request that follows on a fresh one is answered
        local after = assert(http.rpc(gw, http.req(2, "demo.echo", { "y" })))
        assert.equal("y", after.json.result)
        h.pause(0.2) -- time to reserve memory, if it did
        local grew = (vm_kb(gw.pid) - vm0) * KiB
        assert.is_true(grew < 16 * MiB, string.format("virtual memory grew by %.1f MiB", grew / MiB))
        for _, c in ipairs(conns) do
            assert.is_false(c.closed)
            c:close()
        end
    end)
end)
