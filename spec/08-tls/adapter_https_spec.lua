-- http.request in adapters reaches https:// URLs: the server's certificate is checked against
-- the adapter service's tls.ca (or the system's CAs) and the URL's host; a connection closed
-- after its response makes the next request resume the TLS session. The HTTPS server is
-- `openssl s_server -www`, whose page says "New, TLSv1.3" or "Reused, TLSv1.3".
local h = require "spec.support.helpers"
local tls = require "spec.support.tls"
local uv = require "luv"

local CALC = uv.cwd() .. "/spec/07-legacy/adapters/calc_adapter.lua" -- calc.fetch(url)

describe("http.request to https:// URLs", function()
    local certs, port

    before_each(function()
        certs = tls.certs()
        port = h.unused_port()
        local server = assert(h.spawn("openssl", { "s_server", "-www", "-accept", "127.0.0.1:" .. port,
            "-cert", certs.server, "-key", certs.server_key }, { name = "s_server" }))
        assert(server:wait_line("^ACCEPT", h.timeout(5)))
    end)

    after_each(h.cleanup)

    local function calc(tls_conf)
        local svc = { adapter = CALC, deadline = 5, tls = tls_conf }
        local gw = assert(h.start_gateway({ services = { calc = svc } }))
        return assert(h.client(gw.addr))
    end

    it("gets the page, the certificate checked against tls.ca and the host; the next request resumes",
       function()
        local c = calc({ ca = certs.ca })
        local r = assert(c:call("calc.fetch", { "https://localhost:" .. port .. "/", 2 }))
        assert.equal(200, r.status, r.message)
        assert.equal("text/html", r.type)
        assert.matches("New, TLSv1%.3", r.body)
        r = assert(c:call("calc.fetch", { "https://localhost:" .. port .. "/", 2 }))
        assert.equal(200, r.status, r.message)
        assert.matches("Reused, TLSv1%.3", r.body)
    end)

    it("fails with 502 and the TLS reason when another CA signed the server's certificate", function()
        local c = calc({ ca = certs.other_ca })
        local r = assert(c:call("calc.fetch", { "https://localhost:" .. port .. "/", 2 }))
        assert.same({ 502, "upstream_unavailable" }, { r.code, r.type })
        assert.equal("TLS failed: unable to get local issuer certificate", r.message)
    end)
end)
