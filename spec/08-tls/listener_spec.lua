-- tls:// listeners: TLS 1.3 (ALPN msgpack-rpc) in the core, on memory BIOs, with `openssl
-- s_client` as the real peer. Certificates are made per file with the openssl command.
local h = require "spec.support.helpers"
local tls = require "spec.support.tls"

local certs

local function gateway(up, tls_conf, top)
    top = top or {}
    top.listen = top.listen or { "tls://127.0.0.1:0", "tcp://127.0.0.1:0" }
    top.tls = tls_conf or { cert = certs.server, key = certs.server_key }
    return assert(h.start_gateway(h.demo_config(up, nil, top)))
end

local function stderr_of(p)
    return table.concat(p.stderr, "\n")
end

describe("tls:// listeners", function()
    local up

    before_each(function()
        certs = tls.certs() -- in a temp dir of the kit: cleanup removes it after each test
        up = assert(h.start_upstream())
    end)

    after_each(h.cleanup)

    it("answer calls over TLS 1.3 with ALPN msgpack-rpc", function()
        local gw = gateway(up)
        assert.matches("listen=tls://127%.0%.0%.1:%d+,tcp://", gw.ready_line)
        local p = tls.s_client(gw.tls_port, certs, "demo.echo", { "over tls\n" })
        local msg = assert(tls.answer(p))
        assert.same({ 1, 1, nil, "over tls\n" }, { msg[1], msg[2], msg[3], msg[4] })
        assert.matches("Protocol version: TLSv1.3", stderr_of(p))
        -- s_client names the protocol ALPN chose in its long summary only
        local r = assert(h.run("openssl", { "s_client", "-connect", "127.0.0.1:" .. gw.tls_port,
                                           "-CAfile", certs.ca, "-alpn", "foo,msgpack-rpc" }, { stdin = "" }))
        assert.matches("ALPN protocol: msgpack%-rpc", r.stdout)
        -- the plaintext listener next to it still answers
        local c = assert(h.client(gw.addr))
        assert.equal("plain", c:call("demo.echo", { "plain" }))
    end)

    it("refuse a client that offers ALPN without msgpack-rpc", function()
        local gw = gateway(up)
        local p = tls.s_client(gw.tls_port, certs, "demo.echo", { "x\n" }, { alpn = "h2" })
        assert(p:wait_exit(h.timeout(5)))
        assert.not_equal(0, p.code)
        assert.matches("no application protocol", p:output())
        assert(gw:wait_log('tls_handshake_failed peer=tcp://127%.0%.0%.1:%d+ '
            .. 'reason="no application protocol"'))
    end)

    it("refuse TLS 1.2 unless tls12 = true", function()
        local gw = gateway(up)
        local p = assert(h.spawn("openssl", { "s_client", "-connect", "127.0.0.1:" .. gw.tls_port,
                                             "-tls1_2", "-brief" }, { name = "s_client" }))
        assert(p:wait_exit(h.timeout(5)))
        assert.not_equal(0, p.code)
        assert(gw:wait_log('tls_handshake_failed peer=%S+ reason="unsupported protocol"'))
    end)

    it("close a plaintext client on a tls:// port without calling anything", function()
        -- a MessagePack array reads as an SSLv2 record header announcing 5 KiB: OpenSSL
        -- waits for them, so the handshake timeout is what ends it
        local gw = gateway(up, { cert = certs.server, key = certs.server_key, handshake_timeout = 0.3 })
        local c = assert(h.client("tcp://127.0.0.1:" .. gw.tls_port))
        c:request("demo.echo", { "plain" })
        assert(c:wait_closed(h.timeout(5)))
        assert(gw:wait_log("client_closed peer=%S+ reason=tls_handshake_timeout"))
        assert.is_nil(next(c.responses))
    end)

    it("close an HTTP client on a tls:// port at once, with a log line", function()
        local gw = gateway(up)
        local c = assert(h.client("tcp://127.0.0.1:" .. gw.tls_port))
        c:send_raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert(c:wait_closed(h.timeout(5)))
        assert(gw:wait_log('tls_handshake_failed peer=%S+ reason="[^"]+"'))
    end)

    it("refuse to start with a certificate that cannot be read, naming the file", function()
        local gw, err = h.start_gateway(h.demo_config(up, nil, {
            listen = "tls://127.0.0.1:0",
            tls = { cert = certs.dir .. "/missing.pem", key = certs.server_key },
        }), { timeout = h.timeout(5) })
        assert.is_nil(gw)
        assert.matches("tls%.cert " .. certs.dir:gsub("%p", "%%%0") .. "/missing%.pem: ", err)
    end)

    it("refuse to start with a key that does not match the certificate", function()
        local gw, err = h.start_gateway(h.demo_config(up, nil, {
            listen = "tls://127.0.0.1:0", tls = { cert = certs.server, key = certs.client_key },
        }), { timeout = h.timeout(5) })
        assert.is_nil(gw)
        assert.matches("tls%.key [^:]+: key values mismatch", err)
    end)

    it("refuse a tls:// listener without a tls table", function()
        local gw, err = h.start_gateway(h.demo_config(up, nil, { listen = "tls://127.0.0.1:0" }),
            { timeout = h.timeout(5) })
        assert.is_nil(gw)
        assert.matches("listen%[1%]: tls://127%.0%.0%.1:0 needs a tls table %(cert and key%)", err)
    end)
end)

describe("tls:// listeners with verify_client (mTLS)", function()
    local up, gw

    before_each(function()
        certs = tls.certs() -- in a temp dir of the kit: cleanup removes it after each test
        up = assert(h.start_upstream())
        gw = gateway(up, { cert = certs.server, key = certs.server_key, ca = certs.ca, verify_client = true })
    end)

    after_each(h.cleanup)

    it("answer a client whose certificate the CA signed", function()
        local p = tls.s_client(gw.tls_port, certs, "demo.echo", { "mtls\n" },
            { cert = certs.client, key = certs.client_key })
        local msg = assert(tls.answer(p))
        assert.equal("mtls\n", msg[4])
    end)

    it("refuse a client without a certificate, with a clear log line", function()
        local p = tls.s_client(gw.tls_port, certs, "demo.echo", { "x\n" })
        assert(p:wait_exit(h.timeout(5)))
        assert.is_nil(tls.answer(p, 0))
        assert.matches("certificate required", p:output())
        assert(gw:wait_log('tls_handshake_failed peer=%S+ reason="peer did not return a certificate"'))
    end)

    it("refuse a certificate from another CA", function()
        local p = tls.s_client(gw.tls_port, certs, "demo.echo", { "x\n" },
            { cert = certs.stranger, key = certs.stranger_key })
        assert(p:wait_exit(h.timeout(5)))
        assert.matches("unknown ca", p:output())
        assert(gw:wait_log('tls_handshake_failed peer=%S+ reason="unable to get local issuer certificate"'))
    end)

    it("refuse an expired certificate", function()
        local p = tls.s_client(gw.tls_port, certs, "demo.echo", { "x\n" },
            { cert = certs.expired, key = certs.client_key })
        assert(p:wait_exit(h.timeout(5)))
        assert.matches("certificate expired", p:output())
        assert(gw:wait_log('tls_handshake_failed peer=%S+ reason="certificate has expired"'))
    end)

    it("refuse verify_client without a ca", function()
        local g, err = h.start_gateway(h.demo_config(up, nil, {
            listen = "tls://127.0.0.1:0",
            tls = { cert = certs.server, key = certs.server_key, verify_client = true },
        }), { timeout = h.timeout(5) })
        assert.is_nil(g)
        assert.matches("tls%.verify_client: needs tls%.ca", err)
    end)
end)

describe("TLS handshakes in progress", function()
    local up

    before_each(function()
        certs = tls.certs() -- in a temp dir of the kit: cleanup removes it after each test
        up = assert(h.start_upstream())
    end)

    after_each(h.cleanup)

    it("close a client that stalls mid-handshake at handshake_timeout", function()
        local gw = gateway(up, { cert = certs.server, key = certs.server_key, handshake_timeout = 0.3 })
        local c = assert(h.client("tcp://127.0.0.1:" .. gw.tls_port))
        c:send_raw("\22\3\1\0\200") -- a handshake record header, then nothing
        assert(c:wait_closed(h.timeout(5)))
        assert(gw:wait_log("client_closed peer=%S+ reason=tls_handshake_timeout"))
    end)

    it("stop accepting at max_handshakes until a handshake ends", function()
        local gw = gateway(up, { cert = certs.server, key = certs.server_key, handshake_timeout = 0.5,
                                 max_handshakes = 1 })
        local first = assert(h.client("tcp://127.0.0.1:" .. gw.tls_port))
        first:send_raw("\22\3\1\0\200")
        -- the second one waits in the kernel's backlog: the gateway says so once
        local second = assert(h.client("tcp://127.0.0.1:" .. gw.tls_port))
        assert(gw:wait_log("tls_handshakes_full listen=tls://127%.0%.0%.1:%d+"))
        second:send_raw("\22\3\1\0\200")
        -- a real client is served once both stalled ones were closed at the timeout
        local p = tls.s_client(gw.tls_port, certs, "demo.echo", { "after\n" })
        local msg = assert(tls.answer(p, h.timeout(5)))
        assert.equal("after\n", msg[4])
        assert(first:wait_closed(h.timeout(1)))
        assert(second:wait_closed(h.timeout(1)))
        local _, n = gw:logs():gsub("reason=tls_handshake_timeout", "")
        assert.equal(2, n)
    end)
end)

describe("mTLS identity", function()
    local up, gw

    before_each(function()
        certs = tls.certs()
        up = assert(h.start_upstream())
        gw = assert(h.start_gateway(([[
return {
    listen = "tls://127.0.0.1:0", drain_timeout = 1,
    tls = { cert = %q, key = %q, ca = %q, verify_client = true },
    auth = { certs = { ["CN=billing"] = { identity = "billing", scopes = { "demo.echo" } } } },
    services = {
        demo = { upstreams = { %q }, deadline = 2, policies = { auth {} } },
        ops = { upstreams = { %q }, deadline = 2, policies = { auth { identities = { "billing" } } } },
        open = { upstreams = { %q }, deadline = 2 },
    },
}]]):format(certs.server, certs.server_key, certs.ca, up.addr, up.addr, up.addr)))
    end)

    after_each(h.cleanup)

    local function call(method, cert, key)
        local p = tls.s_client(gw.tls_port, certs, method, { "hi\n" },
            { cert = cert, key = key, flush = "open.echo" })
        return assert(tls.answer(p))
    end

    it("makes the certificate's CN the identity auth {} checks scopes of, with no token", function()
        local msg = call("demo.echo", certs.client, certs.client_key)
        assert.is_nil(msg[3])
        assert.equal("hi\n", msg[4])
    end)

    it("refuses a method outside the certificate's scopes with 403", function()
        local msg = call("ops.echo", certs.client, certs.client_key)
        assert.equal(403, msg[3].code)
        assert.equal("identity 'billing' has no scope for 'ops.echo'", msg[3].message)
    end)

    it("gives a certificate not listed in auth.certs its subject as identity and no scope", function()
        local msg = call("demo.echo", certs.reporting, certs.reporting_key)
        assert.equal(403, msg[3].code)
        assert.equal("identity 'CN=reporting' has no scope for 'demo.echo'", msg[3].message)
        msg = call("ops.echo", certs.reporting, certs.reporting_key)
        assert.equal("identity 'CN=reporting' may not call service 'ops'", msg[3].message)
    end)
end)
