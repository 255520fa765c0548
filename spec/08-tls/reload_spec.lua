-- Certificates reload with the config (SIGHUP / `ghostgate reload`): new handshakes use the
-- new files, established connections keep theirs, and a broken certificate is refused like a
-- broken config (the old one stays).
local h = require "spec.support.helpers"
local tls = require "spec.support.tls"
local uv = require "luv"

describe("TLS certificate reload", function()
    local certs, up, gw, cert, key

    before_each(function()
        certs = tls.certs()
        up = assert(h.start_upstream())
        -- the files the config names; the spec replaces their contents
        cert, key = certs.dir .. "/live.pem", certs.dir .. "/live.key"
        assert(h.write_file(cert, assert(h.read_file(certs.server))))
        assert(h.write_file(key, assert(h.read_file(certs.server_key))))
        gw = assert(h.start_gateway(h.demo_config(up, nil, {
            listen = "tls://127.0.0.1:0", tls = { cert = cert, key = key },
        })))
    end)

    after_each(h.cleanup)

    local function reload(pattern)
        local _, from = gw.proc:wait_line("ready listen=")
        local n = #gw.proc.lines
        assert(uv.kill(gw.pid, "sighup"))
        assert(gw.proc:wait_line(pattern, h.timeout(5), math.max(from, n) + 1))
    end

    it("serves new handshakes with the new certificate; an established connection keeps its own", function()
        -- a call in flight on a connection made with the old certificate
        local old = tls.s_client(gw.tls_port, certs, "demo.sleep", { 500, "old\n" })
        assert(old:wait_line("CONNECTION ESTABLISHED", h.timeout(5)))

        assert(h.write_file(cert, assert(h.read_file(certs.server2))))
        assert(h.write_file(key, assert(h.read_file(certs.server2_key))))
        reload(" reloaded ")

        local new = tls.s_client(gw.tls_port, certs, "demo.echo", { "new\n" }, { ca = certs.other_ca })
        assert.equal("new\n", assert(tls.answer(new))[4])
        local stale = tls.s_client(gw.tls_port, certs, "demo.echo", { "x\n" })
        assert(stale:wait_exit(h.timeout(5)))
        assert.matches("unable to get local issuer certificate", stale:output())

        assert.equal("old\n", assert(tls.answer(old))[4])
    end)

    it("refuses a broken certificate and keeps serving with the old one", function()
        assert(h.write_file(cert, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
        reload("reload_failed")
        assert.matches('reload_failed reason="[^"]*: tls%.cert [^:]+/live%.pem: [^"]+" kept=', gw:logs())
        local p = tls.s_client(gw.tls_port, certs, "demo.echo", { "still\n" })
        assert.equal("still\n", assert(tls.answer(p))[4])
    end)
end)
