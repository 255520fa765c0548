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

    it("answers every call while SIGHUP swaps the certificate under load", function()
        -- four tasks call for 4 s, each opening a new connection (a new handshake) every ten
        -- calls; the client trusts both CAs, so every certificate served is good
        local bundle = certs.dir .. "/both-cas.pem"
        assert(h.write_file(bundle, assert(h.read_file(certs.ca)) .. assert(h.read_file(certs.other_ca))))
        local script = certs.dir .. "/load.lua"
        assert(h.write_file(script, [[
local ghost = require "ghost"
local addr, ca, stop = "tls://localhost:" .. arg[1], arg[2], ghost.now() + 4
local answered, failed, started = 0, 0, false
local function caller()
    local gw, i = nil, 0
    while ghost.now() < stop do
        i = i + 1
        if i % 10 == 1 then
            if gw then gw:close() end
            local err
            gw, err = ghost.connect(addr, { ca = ca, timeout = 5 })
            if not gw then
                failed = failed + 1
                io.stderr:write("connect: ", tostring(err), "\n")
                ghost.sleep(0.01)
            end
        end
        if gw then
            local ok, r = pcall(gw.demo.echo, i)
            if ok and r == i then
                answered = answered + 1
            else
                failed = failed + 1
                io.stderr:write("call: ", tostring(r), "\n")
            end
            if not started and answered >= 20 then
                started = true
                print("calling")
                io.stdout:flush()
            end
        end
    end
    if gw then gw:close() end
end
for _ = 1, 4 do ghost.spawn(caller) end
ghost.run()
print(string.format("answered=%d failed=%d", answered, failed))
]]))
        local p = assert(h.spawn(h.bin("ghostgate"), { "run", script, tostring(gw.tls_port), bundle },
            { name = "load" }))
        assert(p:wait_line("^calling", h.timeout(10)))
        local reloads = 0
        for i = 1, 4 do
            local which = i % 2 == 1 and "server2" or "server"
            assert(h.write_file(cert, assert(h.read_file(certs[which]))))
            assert(h.write_file(key, assert(h.read_file(certs[which .. "_key"]))))
            reload(" reloaded ")
            reloads = reloads + 1
        end
        assert.is_falsy(p.exited, "the calls ended before the last reload")
        assert.equal(4, reloads)
        local line = assert(p:wait_line("^answered=", h.timeout(15)))
        local answered, failed = line:match("^answered=(%d+) failed=(%d+)")
        assert.equal("0", failed, p:output())
        assert.is_true(tonumber(answered) > 20, line)
    end)
end)
