-- State changes are logged once each: an upstream endpoint going down and coming back (both
-- protocols) and a breaker opening and closing. The repeats in between (each reconnect
-- attempt, each refused call) are counted on the closing line and logged at debug only.
local h = require "spec.support.helpers"
local legacy = require "spec.support.legacy"
local e2e = require "spec.support.policy_e2e"

local function lines(gw, pattern)
    return e2e.lines(gw, pattern)
end

-- Log timestamps (UTC, ms) as seconds, to compare the delays they announce with the real ones.
local function stamp(line)
    local hh, mm, ss, ms = line:match("^%d+%-%d+%-%d+T(%d+):(%d+):(%d+)%.(%d+)Z")
    return hh * 3600 + mm * 60 + ss + ms / 1000
end

describe("An upstream endpoint that goes down", function()
    after_each(h.cleanup)

    it("is logged once (msgpack-rpc), with the delay the reconnect waits, and once when back", function()
        local port = h.unused_port()
        local addr = "tcp://127.0.0.1:" .. port
        local gw = assert(h.start_gateway({ services = { demo = { upstream = addr, connections = 2 } } },
            { log_level = "debug" }))
        -- the backoff doubles from 100 ms to its cap of 5 s (+-20% jitter): await a delay at the cap
        local failed = assert(e2e.await_lines(gw, "upstream_connect_failed .* retry_ms=[4-9]%d%d%d$", 1,
            h.timeout(15)))
        for _, l in ipairs(lines(gw, "upstream_connect_failed")) do
            local ms = tonumber(l:match("retry_ms=(%d+)$"))
            assert.is_true(ms >= 80 and ms <= 6000, l)
        end
        -- each announced delay is the one waited: the next attempt of that connection follows it
        local by_conn = {}
        for _, l in ipairs(lines(gw, "upstream_connect_failed")) do
            local conn = l:match(" conn=(%d+) ")
            if by_conn[conn] then
                local waited = stamp(l) - stamp(by_conn[conn])
                local said = tonumber(by_conn[conn]:match("retry_ms=(%d+)$")) / 1000
                -- (the loop's clock may lag the log's by a few ms; the jitter alone is 20%)
                assert.is_true(waited >= said - 0.05 and waited < said + h.timeout(0.15), l)
            end
            by_conn[conn] = l
        end
        assert.matches(("upstream_connect_failed service=demo upstream=%s conn=%%d "
            .. "reason=\"connection refused\" retry_ms=%%d+$"):format(addr:gsub("%p", "%%%0")), failed[1])
        local down = lines(gw, " upstream_down ")
        assert.equal(1, #down)
        assert.matches(" warn upstream_down service=demo upstream=tcp://127%.0%.0%.1:%d+ "
            .. "reason=\"connection refused\" retry_ms=%d+$", down[1])
        local repeats = #lines(gw, "upstream_connect_failed") - 1

        -- it comes back: one line, with the failures that were not logged
        local up = assert(h.start_upstream({ listen = addr }))
        local back = assert(gw:wait_log(" upstream_back ", h.timeout(10)))
        assert.matches(" info upstream_back service=demo upstream=tcp://127%.0%.0%.1:%d+ down_ms=%d+ "
            .. "suppressed=%d+$", back)
        assert.is_true(tonumber(back:match("suppressed=(%d+)")) >= repeats)
        local c = assert(h.client(gw.addr))
        assert.equal("back", c:call("demo.echo", { "back" }))
        assert.equal(1, #lines(gw, " upstream_back "))
        assert.equal(1, #lines(gw, " upstream_down "))
        up:stop()
    end)

    it("is logged once (jsonrpc-http), however many connections its pool has", function()
        local port = h.unused_port()
        local url = "http://127.0.0.1:" .. port .. "/rpc"
        local gw = legacy.gateway({
            calc = { protocol = "jsonrpc-http", upstream = url, connections = 8 },
        }, nil, { log_level = "debug" })
        assert(e2e.await_lines(gw, "upstream_connect_failed service=calc ", 24, h.timeout(10)))
        assert.equal(1, #lines(gw, " upstream_down "))
        assert.matches(" warn upstream_down service=calc upstream=http://127%.0%.0%.1:%d+/rpc "
            .. "reason=\"connection refused\" retry_ms=%d+$", lines(gw, " upstream_down ")[1])
        assert.equal(0, #lines(gw, " warn upstream_connect_failed "))

        local up = legacy.script("spec/support/jsonrpc_server.lua", { "--port", tostring(port) })
        local back = assert(gw:wait_log(" upstream_back ", h.timeout(10)))
        assert.matches(" info upstream_back service=calc upstream=http://127%.0%.0%.1:%d+/rpc "
            .. "down_ms=%d+ suppressed=%d+$", back)
        assert.is_true(tonumber(back:match("suppressed=(%d+)")) >= 23)
        up.proc:stop()
    end)
end)

describe("A breaker", function()
    after_each(h.cleanup)

    it("logs once when it opens and once when it closes, with the reopenings and refusals between", function()
        local up = assert(h.start_upstream())
        local gw = e2e.gateway([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1, log_level = "warn",
    services = {
        demo = { upstream = "%UP1%", deadline = 2,
                 policies = {
                     breaker { failures = 2, cooldown = 0.2, max_cooldown = 1, count_errors = true },
                 } },
    },
}]], { up = { up }, log_level = "warn" })
        local c = assert(h.client(gw.addr))
        for _ = 1, 2 do c:call("demo.fail", { "boom" }) end
        local opened = assert(gw:wait_log(" breaker_opened ", h.timeout(5)))
        assert.matches(" warn breaker_opened service=demo upstream=tcp://127%.0%.0%.1:%d+ "
            .. "reason=\"2 failures in a row\" cooldown=0%.2$", opened)
        -- refused calls, then a probe that fails (reopens), then one that succeeds (closes)
        local refused = 0
        local probe = assert(h.retry(function()
            local _, err = c:call("demo.fail", { "probe" })
            if err.code == 530 then refused = refused + 1 return nil end
            return err
        end, h.timeout(5), 0.02))
        assert.equal("app_error", probe.type)
        assert(h.retry(function()
            local r, err = c:call("demo.echo", { "ok" })
            if err then refused = refused + 1 end
            return r
        end, h.timeout(5), 0.02))
        local closed = assert(gw:wait_log(" breaker_closed ", h.timeout(5)))
        assert.matches((" info breaker_closed service=demo upstream=tcp://127%%.0%%.0%%.1:%%d+ "
            .. "open_s=%%d+%%.%%d+ reopened=1 refused=%d$"):format(refused), closed)
        assert.equal(1, #lines(gw, " breaker_opened "))
        assert.equal(0, #lines(gw, "breaker_reopened")) -- that one is at debug
    end)
end)
