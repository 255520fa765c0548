-- TLS session resumption: an upstream pool that reconnects resumes the session of its last
-- connection to that endpoint, and a reload keeps the tls:// listeners' session-ticket keys,
-- so a client's ticket from before the reload still resumes (unless the reload changed what
-- the listener trusts). Real gateways, real `openssl s_client`.
local h = require "spec.support.helpers"
local tls = require "spec.support.tls"
local uv = require "luv"

-- s_client without -brief: its summary says "New, TLSv1.3, ..." or "Reused, TLSv1.3, ...".
local function s_client(port, certs, opts)
    local args = { "s_client", "-connect", "127.0.0.1:" .. port, "-CAfile", certs.ca,
                   "-verify_return_error", "-verify_hostname", "localhost", "-ign_eof",
                   "-alpn", "msgpack-rpc", "-cert", certs.client, "-key", certs.client_key }
    for k, v in pairs(opts) do
        args[#args + 1] = "-" .. k
        args[#args + 1] = v
    end
    local req = h.mp.encode({ 0, 1, "demo.echo", { "x\n" } })
    return assert(h.spawn("openssl", args, { name = "s_client", stdin = req }))
end

-- A first connection to port gets a full handshake and a ticket (saved after the handshake:
-- wait for the file). Returns the path of the saved session, for { sess_in = path }.
local function first_ticket(port, certs)
    local sess = certs.dir .. "/session.pem"
    local first = s_client(port, certs, { sess_out = sess })
    assert(first:wait_line("^New, TLSv1%.3", h.timeout(5)))
    assert(h.await(function()
        return (h.read_file(sess) or ""):find("BEGIN SSL SESSION PARAMETERS", 1, true)
    end, h.timeout(5)), "no session ticket")
    first:stop()
    return sess
end

-- The answer to the request s_client sends, [1, 1, nil, "x\n"], as the line the kit reads.
local ANSWER = "\148\1\1\192\162x$"

describe("TLS session resumption", function()
    local certs, up

    before_each(function()
        certs = tls.certs()
        up = assert(h.start_upstream())
    end)

    after_each(h.cleanup)

    it("an upstream pool that reconnects resumes its last session with that endpoint", function()
        -- the inner gateway closes the idle pool connection after a second: the pool reconnects
        local inner = assert(h.start_gateway(h.demo_config(up, nil, {
            listen = "tls://127.0.0.1:0", limits = { idle_timeout = 1 },
            tls = { cert = certs.server, key = certs.server_key, ca = certs.ca, verify_client = true },
        })))
        local gw = assert(h.start_gateway(h.demo_config(nil, {
            upstreams = { "tls://localhost:" .. inner.tls_port }, connections = 1, keep_prefix = true,
            tls = { ca = certs.ca, cert = certs.client, key = certs.client_key },
        }), { log_level = "debug" }))
        local line = "upstream_tls_session service=demo upstream=tls://127%.0%.0%.1:%d+ conn=0 session="
        assert(gw:wait_log(line .. "new"))
        assert(gw:wait_log("upstream_lost service=demo", h.timeout(5)))
        assert(gw:wait_log(line .. "resumed", h.timeout(5)))
        local c = assert(h.client(gw.addr))
        assert.equal("resumed", c:call("demo.echo", { "resumed" }))
    end)

    it("with workers, a ticket from before any worker died still resumes on the restarted ones",
       function()
        local gw = assert(h.start_gateway(h.demo_config(up, nil, {
            listen = "tls://127.0.0.1:0", workers = 2,
            tls = { cert = certs.server, key = certs.server_key, ca = certs.ca, verify_client = true },
        })))
        assert.matches("^tls://", gw.addrs[1]) -- the master's ready line names the scheme
        local sess = first_ticket(gw.tls_port, certs)
        -- every worker dies and the master starts it again from the config file
        for w = 0, 1 do
            local ready = assert(gw:wait_log("worker_ready worker=" .. w .. " ", h.timeout(10)))
            local pid = ready:match("pid=(%d+)")
            assert(uv.kill(tonumber(pid), "sigkill"))
            assert(h.await(function()
                local _, n = gw:logs():gsub("worker_ready worker=" .. w .. " ", "")
                return n == 2
            end, h.timeout(10)), "worker " .. w .. " was not restarted")
        end
        for _ = 1, 4 do
            local again = s_client(gw.tls_port, certs, { sess_in = sess })
            assert(again:wait_line("^Reused, TLSv1%.3", h.timeout(5)))
            assert(again:wait_line(ANSWER, h.timeout(5)))
            again:stop()
        end
    end)

    describe("across a reload", function()
        local gw, ca, sess

        before_each(function()
            ca = certs.dir .. "/live-ca.pem" -- the clients' CA bundle; a spec may change it
            assert(h.write_file(ca, assert(h.read_file(certs.ca))))
            gw = assert(h.start_gateway(h.demo_config(up, nil, {
                listen = "tls://127.0.0.1:0",
                tls = { cert = certs.server, key = certs.server_key, ca = ca, verify_client = true },
            })))
            sess = first_ticket(gw.tls_port, certs)
        end)

        local function reload()
            local n = #gw.proc.lines
            assert(uv.kill(gw.pid, "sighup"))
            assert(gw.proc:wait_line(" reloaded ", h.timeout(5), n + 1))
        end

        it("keeps the listener's ticket keys: a ticket from before the reload resumes", function()
            reload()
            local again = s_client(gw.tls_port, certs, { sess_in = sess })
            assert(again:wait_line("^Reused, TLSv1%.3", h.timeout(5)))
            assert(again:wait_line(ANSWER, h.timeout(5)))
        end)

        it("drops them when the reload changes the clients' CA: a full handshake checks the certificate",
           function()
            assert(h.write_file(ca, assert(h.read_file(certs.ca)) .. assert(h.read_file(certs.other_ca))))
            reload()
            local again = s_client(gw.tls_port, certs, { sess_in = sess })
            assert(again:wait_line("^New, TLSv1%.3", h.timeout(5)))
            assert(again:wait_line(ANSWER, h.timeout(5)))
        end)
    end)
end)
