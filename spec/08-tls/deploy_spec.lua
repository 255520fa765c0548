-- Deployment: `make install PREFIX=` puts the binary, the man page, the docs, the example
-- configs and a hardened systemd unit in FHS places; deploy/examples/production.lua (TLS with
-- client certificates, auth from certificates, admin on loopback) passes `ghostgate check`.
local h = require "spec.support.helpers"
local tls = require "spec.support.tls"
local uv = require "luv"

describe("make install", function()
    after_each(h.cleanup)

    it("installs the unit, the man page, the docs and the examples under PREFIX", function()
        local prefix = h.tmpdir() .. "/usr"
        local r = assert(h.run("make", { "--no-print-directory", "install-files", "PREFIX=" .. prefix,
                                         "BUILD=" .. (os.getenv("GG_BUILD") or "build") }))
        assert.equal(0, r.code, r.output)
        for _, f in ipairs({ "bin/ghostgate", "lib/lua/5.1/ghost/core.so", "share/lua/5.1/ghost/init.lua",
                             "share/man/man1/ghostgate.1", "share/doc/ghostgate/configuration.md",
                             "share/doc/ghostgate/examples/production.lua",
                             "lib/systemd/system/ghostgate.service" }) do
            assert.truthy(uv.fs_stat(prefix .. "/" .. f), f .. " not installed")
        end
        local unit = assert(h.read_file(prefix .. "/lib/systemd/system/ghostgate.service"))
        local exec = "\nExecStart=" .. prefix .. "/bin/ghostgate serve -c /etc/ghostgate/gateway.lua\n"
        assert.truthy(unit:find(exec, 1, true))
    end)
end)

describe("deploy/ghostgate.service", function()
    it("runs unprivileged and confined, and reloads with SIGHUP", function()
        local unit = assert(h.read_file("deploy/ghostgate.service"))
        for _, line in ipairs({ "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                                "CapabilityBoundingSet=", "AmbientCapabilities=",
                                "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                                "ExecReload=/bin/kill -HUP $MAINPID", "PrivateTmp=yes" }) do
            assert.truthy(unit:find("\n" .. line .. "\n", 1, true), line)
        end
    end)
end)

describe("deploy/examples/production.lua", function()
    after_each(h.cleanup)

    it("passes ghostgate check with its certificates next to it", function()
        local certs = tls.certs()
        local dir = h.tmpdir()
        assert(uv.fs_mkdir(dir .. "/tls", 448))
        local files = { ["server.pem"] = certs.server, ["server.key"] = certs.server_key,
                        ["clients-ca.pem"] = certs.ca, ["internal-ca.pem"] = certs.other_ca }
        for name, from in pairs(files) do
            assert(h.write_file(dir .. "/tls/" .. name, assert(h.read_file(from))))
        end
        assert(h.write_file(dir .. "/gateway.lua", assert(h.read_file("deploy/examples/production.lua"))))
        local r = assert(h.run(h.bin("ghostgate"), { "check", "-c", dir .. "/gateway.lua" }))
        assert.equal(0, r.code, r.output)
        -- and a missing key is named
        assert(os.remove(dir .. "/tls/server.key"))
        r = assert(h.run(h.bin("ghostgate"), { "check", "-c", dir .. "/gateway.lua" }))
        assert.equal(1, r.code)
        assert.matches("tls%.key [^:]*tls/server%.key: ", r.stderr)
    end)
end)
