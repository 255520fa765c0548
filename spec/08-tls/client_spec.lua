-- The Lua library over TLS: ghost.connect("tls://...", { ca, cert, key, server_name }) checks
-- the server's certificate and name before it returns; ghost.listen/serve take { tls = {...} }.
local h = require "spec.support.helpers"
local tls = require "spec.support.tls"

describe("ghost.connect to tls://", function()
    local ghost, certs, up, gw, conns

    before_each(function()
        ghost = h.ghost()
        certs = tls.certs()
        up = assert(h.start_upstream())
        gw = assert(h.start_gateway(h.demo_config(up, nil, {
            listen = "tls://127.0.0.1:0",
            tls = { cert = certs.server, key = certs.server_key, ca = certs.ca },
        })))
        conns = {}
    end)

    after_each(function()
        for _, c in ipairs(conns) do c:close() end
        h.cleanup()
    end)

    local function connect(opts, addr)
        local c, err = ghost.connect(addr or gw.tls, opts)
        if c then conns[#conns + 1] = c end
        return c, err
    end

    it("calls over TLS, checking the certificate against ca and the address's host", function()
        local c = assert(connect({ ca = certs.ca }))
        assert.equal("secret", c.demo.echo("secret"))
        -- the name written in the address is checked: localhost is in the certificate too
        local byname = assert(connect({ ca = certs.ca }, "tls://localhost:" .. gw.tls_port))
        assert.equal("named", byname.demo.echo("named"))
    end)

    it("refuses a server whose certificate another CA signed", function()
        local c, err = connect({ ca = certs.other_ca })
        assert.is_nil(c)
        assert.equal("connection_failed", err.type)
        assert.equal("TLS with " .. gw.tls .. " failed: self-signed certificate in certificate chain",
            err.message)
        assert(gw:wait_log('tls_handshake_failed peer=%S+ reason="tlsv1 alert unknown ca"'))
    end)

    it("refuses a server whose certificate names another host", function()
        local c, err = connect({ ca = certs.ca, server_name = "billing.example" })
        assert.is_nil(c)
        assert.equal("connection_failed", err.type)
        assert.equal("TLS with " .. gw.tls .. " failed: hostname mismatch", err.message)
    end)

    it("rejects TLS options on a plaintext address, and cert without key", function()
        assert.has_error(function() ghost.connect("tcp://127.0.0.1:1", { ca = "x" }) end,
            "ghost.connect: option ca is for tls:// addresses")
        assert.has_error(function() ghost.connect(gw.tls, { cert = certs.client }) end,
            "ghost.connect: options cert and key go together")
    end)
end)

describe("ghost.connect with a client certificate (mTLS)", function()
    local ghost, certs, up, gw, conns

    before_each(function()
        ghost = h.ghost()
        certs = tls.certs()
        up = assert(h.start_upstream())
        gw = assert(h.start_gateway(h.demo_config(up, nil, {
            listen = "tls://127.0.0.1:0",
            tls = { cert = certs.server, key = certs.server_key, ca = certs.ca, verify_client = true },
        })))
        conns = {}
    end)

    after_each(function()
        for _, c in ipairs(conns) do c:close() end
        h.cleanup()
    end)

    it("presents cert and key", function()
        local c = assert(ghost.connect(gw.tls, { ca = certs.ca, cert = certs.client,
                                                 key = certs.client_key }))
        conns[#conns + 1] = c
        assert.equal("mine", c.demo.echo("mine"))
    end)

    it("fails the first call with the server's alert when it has none", function()
        -- in TLS 1.3 the client's handshake ends before the server checks its certificate
        local c = ghost.connect(gw.tls, { ca = certs.ca })
        if c then conns[#conns + 1] = c end
        local ok, err = ghost.try(function() return c.demo.echo("x") end)
        assert.is_nil(ok)
        assert.matches("certificate required", err.message)
        assert(gw:wait_log('tls_handshake_failed peer=%S+ reason="peer did not return a certificate"'))
    end)
end)

describe("ghost.listen on tls://", function()
    local ghost, certs, srv, conns

    before_each(function()
        ghost = h.ghost()
        certs = tls.certs()
        conns = {}
    end)

    after_each(function()
        for _, c in ipairs(conns) do c:close() end
        if srv then srv:close() end
        h.cleanup()
    end)

    it("serves a backend over TLS, with the client's certificate required", function()
        local err
        srv, err = ghost.listen({ hello = function(who) return "hello " .. who end }, "tls://127.0.0.1:0",
            { quiet = true, signals = false,
              tls = { cert = certs.server, key = certs.server_key, ca = certs.ca, verify_client = true } })
        assert(srv, err and tostring(err))
        assert.matches("^tls://127%.0%.0%.1:%d+$", srv.address)
        local c = assert(ghost.connect(srv.address, { ca = certs.ca, cert = certs.client,
                                                      key = certs.client_key }))
        conns[#conns + 1] = c
        assert.equal("hello tls", c.hello("tls"))
    end)

    it("refuses tls:// without options", function()
        local s, err = ghost.listen({ f = function() end }, "tls://127.0.0.1:0",
            { quiet = true, signals = false })
        assert.is_nil(s)
        assert.matches("needs TLS options", tostring(err))
    end)
end)

describe("ghost.serve on tls://", function()
    after_each(h.cleanup)

    it("closes a peer that does not finish its handshake within tls.handshake_timeout", function()
        local certs = tls.certs()
        local be = assert(h.start_backend(([[
local ghost = require "ghost"
ghost.serve({ hello = function() return "hi\n" end }, "tls://127.0.0.1:0",
    { tls = { cert = %q, key = %q, handshake_timeout = 0.5 } })
]]):format(certs.server, certs.server_key)))
        assert.is_number(be.tls_port)
        local stalled = assert(h.client("tcp://127.0.0.1:" .. be.tls_port))
        stalled:send_raw("\22\3\1\0\200") -- the start of a ClientHello, never finished
        assert(stalled:wait_closed(h.timeout(3)), "still open after the handshake timeout")
        -- a real client is still served
        local p = tls.s_client(be.tls_port, certs, "hello", {})
        assert.equal("hi\n", assert(tls.answer(p))[4])
    end)
end)

describe("ghostgate call -a tls://", function()
    local certs, up, gw

    before_each(function()
        certs = tls.certs()
        up = assert(h.start_upstream())
        gw = assert(h.start_gateway(h.demo_config(up, nil, {
            listen = "tls://127.0.0.1:0",
            tls = { cert = certs.server, key = certs.server_key, ca = certs.ca, verify_client = true },
        })))
    end)

    after_each(h.cleanup)

    local function call(args)
        local argv = { "call", "-a", gw.tls }
        for _, a in ipairs(args) do argv[#argv + 1] = a end
        return assert(h.run(h.bin("ghostgate"), argv))
    end

    it("calls with --ca, --cert and --key", function()
        local r = call({ "--ca", certs.ca, "--cert", certs.client, "--key", certs.client_key,
                         "demo.echo", "hi" })
        assert.equal(0, r.code)
        assert.equal('"hi"', r.stdout)
    end)

    it("refuses a gateway whose certificate another CA signed, or that names another host", function()
        local r = call({ "--ca", certs.other_ca, "--cert", certs.client, "--key", certs.client_key,
                         "demo.echo", "hi" })
        assert.equal(2, r.code)
        assert.equal("ghostgate call: TLS failed: self-signed certificate in certificate chain ("
            .. gw.tls .. ")", r.stderr)
        r = call({ "--ca", certs.ca, "--server-name", "billing.example", "--cert", certs.client,
                   "--key", certs.client_key, "demo.echo", "hi" })
        assert.equal(2, r.code)
        assert.equal("ghostgate call: TLS failed: hostname mismatch (" .. gw.tls .. ")", r.stderr)
    end)

    it("reports the gateway's alert when no client certificate is given", function()
        local r = call({ "--ca", certs.ca, "demo.echo", "hi" })
        assert.equal(2, r.code)
        assert.equal("ghostgate call: TLS failed: tlsv13 alert certificate required (" .. gw.tls .. ")",
            r.stderr)
    end)

    it("refuses TLS options for a plaintext address", function()
        local r = assert(h.run(h.bin("ghostgate"), { "call", "-a", "tcp://127.0.0.1:1", "--ca", certs.ca,
                                                    "demo.echo" }))
        assert.equal(64, r.code)
        assert.matches("%-%-ca, %-%-cert, %-%-key and %-%-server%-name are for tls:// addresses", r.stderr)
    end)
end)
