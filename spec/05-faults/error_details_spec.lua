-- Errors sent to clients do not leak internals: a failing HTTP upstream is reported as "the
-- upstream of service 'x' failed" with an error id, and the log line with that id has the
-- detail; a URL's query string (often a credential) is shown as ?<redacted> in logs and
-- /routes; the tracebacks backends and adapters put in their errors reach clients only from a
-- service with error_details = true. See docs/protocol.md, Error object.
local h = require "spec.support.helpers"
local http = require "spec.support.http"
local legacy = require "spec.support.legacy"

describe("Error details", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("of an HTTP upstream stay in the log under an id the caller gets; its query string nowhere", function()
        local up = legacy.jsonrpc()
        local gw = http.start({ services = { x = {
            protocol = "jsonrpc-http", upstream = up.url .. "?api_key=SECRET", deadline = 5,
            policies = { { name = "breaker", failures = 1, cooldown = 30 } },
        } } })
        local c = assert(h.client(gw.addr))
        local _, err = c:call("x.http500", {})
        assert(h.is_error(err, 502, "upstream_unavailable"))
        local id = err.message:match(
            "^the upstream of service 'x' failed %(error id (%x+); see the gateway's log%)$")
        assert.is_string(id, err.message)
        local line = assert(gw:wait_log("upstream_http_error id=" .. id .. " service=x ", h.timeout(3)))
        assert.matches("upstream=http://127.0.0.1:%d+/rpc%?<redacted> reason=\"HTTP %d+", line)
        -- the breaker opened on that failure: its message shows the address redacted too
        _, err = c:call("x.http500", {})
        assert(h.is_error(err, 530, "circuit_open"))
        assert.matches("^circuit open for upstream http://127.0.0.1:%d+/rpc%?<redacted> of service 'x'$",
            err.message)
        local routes = assert(http.get(gw.admin_url .. "/routes")).json
        local u = routes.services[1].upstreams[1]
        assert.matches("^http://127.0.0.1:%d+/rpc%?<redacted>$", u.address)
        assert.equal("open", u.breaker)
        for _, l in ipairs(gw.proc.lines) do
            assert.is_nil(l:find("SECRET", 1, true), l)
        end
        assert.is_nil(assert(http.get(gw.admin_url .. "/routes")).body:find("SECRET", 1, true))
        assert.is_nil(assert(http.get(gw.admin_url .. "/ready")).body:find("SECRET", 1, true))
    end)

    it("a backend's traceback reaches clients only from a service with error_details = true", function()
        local be = assert(h.start_backend("deploy/demo/service.lua", { "tcp://127.0.0.1:0" }))
        local gw = assert(h.start_gateway({ services = {
            demo = { upstream = be.addr },
            dev = { upstream = be.addr, error_details = true },
        } }))
        local c = assert(h.client(gw.addr))
        local _, err = c:call("demo.fail", { "on purpose" })
        assert(h.is_error(err, 500, "runtime_error"))
        assert.matches("on purpose$", err.message)
        assert.is_nil(err.traceback)
        _, err = c:call("dev.fail", { "on purpose" })
        assert(h.is_error(err, 500, "runtime_error"))
        assert.matches("^stack traceback:\n", err.traceback)
        -- the answer after a stripped one is intact
        assert.equal("after", c:call("demo.echo", { "after" }))
    end)
end)
