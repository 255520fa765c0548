-- Listeners: `listen` is one address or a list (tcp://HOST:PORT, HOST:PORT, unix:/path).
-- Port 0 picks a free port; the `ready listen=...` log line gives the real addresses.
local h = require "spec.support.helpers"

describe("Listeners", function()
    local up

    before_each(function()
        up = assert(h.start_upstream())
    end)

    after_each(h.cleanup)

    it("announce the real addresses and the pid in the ready line", function()
        local gw = assert(h.start_gateway(h.demo_config(up)))
        assert.matches("^%S+ info ready listen=tcp://127%.0%.0%.1:%d+ .*pid=%d+", gw.ready_line)
        assert.is_true(gw.port > 0)
        if not os.getenv("GG_WRAPPER") then
            assert.equal(gw.pid, gw.logged_pid)
        end
    end)

    it("serve calls on a unix socket", function()
        local path = h.tmpdir() .. "/gw.sock"
        local gw = assert(h.start_gateway(h.demo_config(up, nil, { listen = "unix:" .. path })))
        assert.equal("unix:" .. path, gw.unix)
        assert.is_nil(gw.addr)
        local c = assert(h.client(gw.unix))
        local res, err = c:call("demo.echo", { "over unix" })
        assert.is_nil(err)
        assert.equal("over unix", res)
    end)

    it("accept HOST:PORT without a scheme", function()
        local gw = assert(h.start_gateway(h.demo_config(up, nil, { listen = "127.0.0.1:0" })))
        local c = assert(h.client(gw.addr))
        assert.equal("plain", c:call("demo.echo", { "plain" }))
    end)

    it("serve on several addresses at once", function()
        local path = h.tmpdir() .. "/gw.sock"
        local gw = assert(h.start_gateway(h.demo_config(up, nil, {
            listen = { "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", "unix:" .. path },
        })))
        assert.equal(3, #gw.addrs)
        local p1, p2 = h.parse_addr(gw.addrs[1]), h.parse_addr(gw.addrs[2])
        assert.equal("tcp", p1.kind)
        assert.equal("tcp", p2.kind)
        assert.are_not.equal(p1.port, p2.port)
        assert.equal("unix:" .. path, gw.addrs[3])
        local conns = {}
        for i, addr in ipairs(gw.addrs) do
            conns[i] = assert(h.client(addr))
            assert(conns[i]:request("demo.sleep", { 50, addr }))
        end
        for i, addr in ipairs(gw.addrs) do
            local r = assert(conns[i]:wait_response(1))
            assert.equal(addr, r.result)
        end
    end)

    it("fail to start, with a message, when the address is in use", function()
        local gw1 = assert(h.start_gateway(h.demo_config(up)))
        local r = assert(h.run(h.bin("ghostgate"), { "serve", "-c",
            assert(h.write_file(h.tmpdir() .. "/c.lua",
                "return " .. h.serialize(h.demo_config(up, nil, { listen = gw1.addr })))) },
            { timeout = h.timeout(5) }))
        assert.are_not.equal(0, r.code)
        assert.matches(tostring(gw1.port), r.stderr, 1, true)
        assert.equal("still", assert(h.client(gw1.addr)):call("demo.echo", { "still" }))
    end)
end)
