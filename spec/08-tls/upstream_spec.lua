-- tls:// MessagePack-RPC upstreams: the gateway checks the upstream's certificate (against
-- services.NAME.tls.ca, or the system's CAs) and name, and can present a client certificate.
-- The TLS upstream here is a second real gateway with a tls:// listener.
local h = require "spec.support.helpers"
local tls = require "spec.support.tls"

describe("tls:// upstreams", function()
    local certs, up, inner

    before_each(function()
        certs = tls.certs()
        up = assert(h.start_upstream())
        inner = assert(h.start_gateway(h.demo_config(up, nil, {
            listen = "tls://127.0.0.1:0",
            tls = { cert = certs.server, key = certs.server_key, ca = certs.ca, verify_client = true },
        })))
    end)

    after_each(h.cleanup)

    local function outer(upstream, tls_conf)
        -- keep_prefix: the inner gateway routes demo.echo too
        return assert(h.start_gateway(h.demo_config(nil, { upstreams = { upstream }, tls = tls_conf,
                                                           keep_prefix = true })))
    end

    it("call through TLS with a client certificate, the name taken from the address", function()
        local gw = outer("tls://localhost:" .. inner.tls_port,
            { ca = certs.ca, cert = certs.client, key = certs.client_key })
        assert(gw:wait_log("upstream_connected service=demo upstream=tls://127%.0%.0%.1:%d+"))
        local c = assert(h.client(gw.addr))
        assert.equal("through tls", c:call("demo.echo", { "through tls" }))
    end)

    it("refuse an upstream whose certificate names another host, with a clear log line", function()
        local gw = outer("tls://127.0.0.1:" .. inner.tls_port,
            { ca = certs.ca, cert = certs.client, key = certs.client_key, server_name = "billing.example" })
        assert(gw:wait_log('upstream_tls_failed service=demo upstream=tls://127%.0%.0%.1:%d+ '
            .. 'reason="hostname mismatch"'))
        local c = assert(h.client(gw.addr))
        local _, err = c:call("demo.echo", { "x" })
        assert.same({ 502, "upstream_unavailable" }, { err.code, err.type })
    end)

    it("refuse an upstream whose certificate another CA signed", function()
        local gw = outer("tls://127.0.0.1:" .. inner.tls_port,
            { ca = certs.other_ca, cert = certs.client, key = certs.client_key })
        assert(gw:wait_log('upstream_tls_failed service=demo upstream=%S+ '
            .. 'reason="self%-signed certificate in certificate chain"'))
        -- the pool's connections fail together: one warning for the outage, the rest at debug
        assert(gw:wait_log("upstream_down service=demo"))
        local _, n = gw:logs():gsub("upstream_tls_failed", "")
        assert.equal(1, n)
    end)

    it("refuse to start when the service's client certificate cannot be read", function()
        local gw, err = h.start_gateway(h.demo_config(nil, { upstreams = { "tls://127.0.0.1:1" },
            tls = { cert = certs.dir .. "/nope.pem", key = certs.client_key } }), { timeout = h.timeout(5) })
        assert.is_nil(gw)
        assert.matches("services%.demo%.upstreams: tls%.cert [^:]+/nope%.pem: ", err)
    end)
end)

describe("tls:// upstreams that never finish the handshake", function()
    after_each(h.cleanup)

    it("are given up after tls.handshake_timeout, logged, and their queued calls answered 502", function()
        local port = h.black_hole().port -- takes the TCP connection, never answers the ClientHello
        local certs = tls.certs()
        local gw = assert(h.start_gateway(h.demo_config(nil, { upstreams = { "tls://127.0.0.1:" .. port },
            deadline = 10, tls = { ca = certs.ca, handshake_timeout = 0.5 } })))
        local c = assert(h.client(gw.addr))
        local t0 = h.now()
        local _, err = c:call("demo.echo", { "x" }, 5)
        assert.same({ 502, "upstream_unavailable" }, { err.code, err.type })
        assert.is_true(h.now() - t0 < 3)
        assert(gw:wait_log('upstream_tls_failed service=demo upstream=tls://127%.0%.0%.1:' .. port
            .. ' reason="handshake timed out"'))
    end)
end)
