-- HTTPS: the JSON-RPC front door and the admin endpoint on tls:// addresses use the config's
-- `tls` table, as the MessagePack-RPC listeners do. curl is the client.
local h = require "spec.support.helpers"
local tls = require "spec.support.tls"

describe("HTTPS front door and admin", function()
    local certs, up, gw, http_port, admin_port

    before_each(function()
        certs = tls.certs()
        up = assert(h.start_upstream())
        gw = assert(h.start_gateway(h.demo_config(up, nil, {
            tls = { cert = certs.server, key = certs.server_key },
            http = { listen = "tls://127.0.0.1:0" },
            admin = { listen = "tls://127.0.0.1:0" },
        })))
        http_port = tonumber(gw.ready_line:match("http=tls://127%.0%.0%.1:(%d+)"))
        admin_port = tonumber(gw.ready_line:match("admin=tls://127%.0%.0%.1:(%d+)"))
    end)

    after_each(h.cleanup)

    local function curl(url, extra)
        local args = { "-sS", "--max-time", "5", "--cacert", certs.ca, url }
        for _, a in ipairs(extra or {}) do args[#args + 1] = a end
        return assert(h.run("curl", args))
    end

    it("answers JSON-RPC over https, the certificate checked by curl", function()
        assert.is_number(http_port)
        local r = curl("https://localhost:" .. http_port .. "/rpc",
            { "-H", "Content-Type: application/json",
              "-d", '{"jsonrpc":"2.0","method":"demo.echo","params":["over https"],"id":1}' })
        assert.equal(0, r.code, r.output)
        assert.equal('{"jsonrpc":"2.0","result":"over https","id":1}', r.stdout)
    end)

    it("serves the admin endpoint over https", function()
        assert.is_number(admin_port)
        local r = curl("https://localhost:" .. admin_port .. "/health")
        assert.equal(0, r.code, r.output)
        assert.matches("ok", r.stdout)
    end)

    it("refuses plain http on a tls:// front door port", function()
        local r = assert(h.run("curl", { "-sS", "--max-time", "5", "http://127.0.0.1:" .. http_port .. "/rpc",
                                         "-d", "{}" }))
        assert.not_equal(0, r.code)
        assert(gw:wait_log('tls_handshake_failed peer=%S+ reason="[^"]+"'))
    end)
end)

describe("HTTPS front door under max_handshakes", function()
    after_each(h.cleanup)

    it("stops accepting at the cap until a handshake ends, as the MessagePack-RPC listeners do", function()
        local certs = tls.certs()
        local up = assert(h.start_upstream())
        local gw = assert(h.start_gateway(h.demo_config(up, nil, {
            tls = { cert = certs.server, key = certs.server_key, handshake_timeout = 0.5,
                    max_handshakes = 1 },
            http = { listen = "tls://127.0.0.1:0" },
        })))
        local port = tonumber(gw.ready_line:match("http=tls://127%.0%.0%.1:(%d+)"))
        local first = assert(h.client("tcp://127.0.0.1:" .. port))
        first:send_raw("\22\3\1\0\200") -- the start of a ClientHello, never finished
        -- the second one waits in the kernel's backlog: the gateway says so once
        local second = assert(h.client("tcp://127.0.0.1:" .. port))
        assert(gw:wait_log("tls_handshakes_full listen=tls://127%.0%.0%.1:" .. port))
        second:send_raw("\22\3\1\0\200")
        -- a real client is served once both stalled ones were closed at the timeout
        local r = assert(h.run("curl", { "-sS", "--max-time", "5", "--cacert", certs.ca,
            "https://localhost:" .. port .. "/rpc", "-H", "Content-Type: application/json",
            "-d", '{"jsonrpc":"2.0","method":"demo.echo","params":["after"],"id":1}' }))
        assert.equal(0, r.code, r.output)
        assert.equal('{"jsonrpc":"2.0","result":"after","id":1}', r.stdout)
        assert(first:wait_closed(h.timeout(1)))
        assert(second:wait_closed(h.timeout(1)))
    end)
end)
