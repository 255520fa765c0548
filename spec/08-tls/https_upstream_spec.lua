-- https:// jsonrpc-http upstreams: the certificate is checked against services.NAME.tls.ca (or
-- the system's CAs) and the URL's host. The HTTPS upstream is a second real gateway's
-- JSON-RPC front door on a tls:// address.
local h = require "spec.support.helpers"
local tls = require "spec.support.tls"

describe("https:// jsonrpc-http upstreams", function()
    local certs, up, inner, port

    before_each(function()
        certs = tls.certs()
        up = assert(h.start_upstream())
        inner = assert(h.start_gateway(h.demo_config(up, nil, {
            tls = { cert = certs.server, key = certs.server_key },
            http = { listen = "tls://127.0.0.1:0" },
        })))
        port = tonumber(inner.ready_line:match("http=tls://127%.0%.0%.1:(%d+)"))
    end)

    after_each(h.cleanup)

    local function outer(url, tls_conf)
        return assert(h.start_gateway(h.demo_config(nil, { upstreams = { url }, protocol = "jsonrpc-http",
                                                           keep_prefix = true, tls = tls_conf })))
    end

    it("call through https, the certificate checked against ca and the URL's host", function()
        local gw = outer("https://localhost:" .. port .. "/rpc", { ca = certs.ca })
        local c = assert(h.client(gw.addr))
        assert.equal("over https", c:call("demo.echo", { "over https" }))
    end)

    it("refuse an upstream whose certificate another CA signed", function()
        local gw = outer("https://localhost:" .. port .. "/rpc", { ca = certs.other_ca })
        local c = assert(h.client(gw.addr))
        local _, err = c:call("demo.echo", { "x" })
        assert.is_table(err)
        assert.equal(502, err.code)
        assert(inner:wait_log('tls_handshake_failed peer=%S+ reason="tlsv1 alert unknown ca"'))
        -- the calling side says why too (once for the outage; and with the call's error id when
        -- the call was waiting for that handshake, not for the next try); its client gets no
        -- more than the error id
        assert(gw:wait_log('upstream_tls_failed service=demo upstream=https://localhost:%d+/rpc '
            .. 'reason="unable to get local issuer certificate"'))
        assert.not_matches("TLS", err.message)
    end)

    it("log upstream_connected only once the handshake is done", function()
        local gw = assert(h.start_gateway(h.demo_config(nil, {
            upstreams = { "https://localhost:" .. port .. "/rpc" }, protocol = "jsonrpc-http",
            keep_prefix = true, tls = { ca = certs.other_ca } })))
        local c = assert(h.client(gw.addr))
        local _, err = c:call("demo.echo", { "x" })
        assert.equal(502, err.code)
        assert(gw:wait_log("upstream_tls_failed service=demo upstream=https://localhost:%d+/rpc "
            .. 'reason="unable to get local issuer certificate"'))
        assert.not_matches("upstream_connected", gw:logs())
        -- the pool's connections fail together: one warning for the outage (they once made one
        -- each), the rest at debug
        assert(gw:wait_log("upstream_down service=demo"))
        local _, n = gw:logs():gsub("upstream_tls_failed", "")
        assert.equal(1, n)
    end)

    it("give up a handshake that does not finish after tls.handshake_timeout, and say so", function()
        local hole = h.black_hole() -- takes the TCP connection, never answers the ClientHello
        local hung = hole.port
        local gw = assert(h.start_gateway(h.demo_config(nil, {
            upstreams = { "https://localhost:" .. hung .. "/rpc" }, protocol = "jsonrpc-http",
            keep_prefix = true, connections = 1, deadline = 30,
            tls = { ca = certs.ca, handshake_timeout = 0.3 } })))
        assert(gw:wait_log("upstream_tls_failed service=demo upstream=https://localhost:" .. hung
            .. '/rpc reason="handshake timed out"', h.timeout(5)))
        -- and it connects again (with a growing delay) rather than holding the slot for ever
        assert(h.await(function() return #hole.held >= 2 end, h.timeout(5)), "no second connection")
    end)
end)
