-- The test kit itself (spec/support): MessagePack framing, config serialisation, addresses,
-- and the client and process handling against ghost-upstream alone (no gateway). When these
-- fail, the gateway specs' failures say nothing about the gateway.
local h = require "spec.support.helpers"
local mp = h.mp

describe("Test kit: MessagePack framing", function()
    it("finds where a message ends, or says how many bytes it still needs", function()
        local msg = mp.encode({ 0, 1, "svc.method", { mp.map({ a = { 1, 2, 3 } }), mp.bin("xyz"), 1.5 } })
        assert.equal(#msg + 1, mp.frame(msg, 1))
        for cut = 1, #msg - 1 do
            local stop, need = mp.frame(msg:sub(1, cut), 1)
            assert.is_nil(stop)
            assert.is_true(need > cut and need <= #msg, "cut " .. cut .. ": need " .. tostring(need))
        end
        local two = msg .. msg
        assert.equal(#msg + 1, mp.frame(two, 1))
        assert.equal(2 * #msg + 1, mp.frame(two, #msg + 1))
    end)

    it("rejects 0xc1 and walks any depth without recursion", function()
        local stop, err = mp.frame("\147\1\193", 1)
        assert.is_false(stop)
        assert.matches("0xc1", err)
        local deep = string.rep("\145", 100000) .. "\192"
        assert.equal(#deep + 1, mp.frame(deep, 1))
    end)

    it("does not trust claimed sizes: dd ff 00 00 00 needs more bytes", function()
        local stop, need = mp.frame("\221\255\0\0\0", 1)
        assert.is_nil(stop)
        assert.equal(6, need)
    end)

    it("splits an envelope into the raw bytes of its elements", function()
        local els = assert(mp.elements(mp.encode({ 1, 7, mp.null, mp.map({ k = "v" }) })))
        assert.same({ "\1", "\7", "\192", "\129\161k\161v" }, els)
    end)

    it("encodes integers as integers, str as str, bin as bin, raw verbatim", function()
        assert.equal("\205\1\0", mp.encode(256))
        assert.equal("\208\128", mp.encode(-128))
        assert.equal("\203", mp.encode(0.5):sub(1, 1))
        assert.equal("\217\32" .. string.rep("s", 32), mp.encode(string.rep("s", 32)))
        assert.equal("\196\2ab", mp.encode(mp.bin("ab")))
        assert.equal("\207\255\255\255\255\255\255\255\255", mp.encode(mp.uint64(0xffffffff, 0xffffffff)))
        assert.equal("\128", mp.encode(mp.map()))
        assert.equal("\144", mp.encode({}))
    end)
end)

describe("Test kit: helpers", function()
    after_each(h.cleanup)

    it("serialises a config table to Lua that loads back to the same table", function()
        local cfg = { listen = { "tcp://127.0.0.1:0", "unix:/x y" }, limits = { max_depth = 8 },
            services = { ["a-b"] = { deadline = 0.25, keep_prefix = true } } }
        local chunk = assert(loadstring("return " .. h.serialize(cfg)))
        assert.same(cfg, chunk())
    end)

    it("parses the three address forms", function()
        assert.same({ kind = "tcp", host = "127.0.0.1", port = 80, addr = "tcp://127.0.0.1:80" },
            h.parse_addr("tcp://127.0.0.1:80"))
        assert.same({ kind = "tcp", host = "127.0.0.1", port = 81, addr = "tcp://127.0.0.1:81" },
            h.parse_addr("127.0.0.1:81"))
        assert.same({ kind = "unix", path = "/tmp/s", addr = "unix:/tmp/s" }, h.parse_addr("unix:/tmp/s"))
        assert.is_nil(h.parse_addr("nonsense"))
    end)

    it("runs a command and collects its exit status and output", function()
        local r = assert(h.run("/bin/sh", { "-c", "echo out; echo err >&2; exit 3" }))
        assert.equal(3, r.code)
        assert.equal("out", r.stdout)
        assert.equal("err", r.stderr)
        local _, err = h.spawn(h.tmpdir() .. "/no-such-binary", {})
        assert.matches("ENOENT", err)
    end)

    it("talks MessagePack-RPC to ghost-upstream directly: calls, order, notifications, close", function()
        local up = assert(h.start_upstream())
        assert.matches("^tcp://127%.0%.0%.1:%d+$", up.addr)
        local c = assert(h.client(up.addr))
        assert.equal("hello", c:call("echo", { "hello" }))
        local slow = c:request("sleep", { 100, "slow" })
        local fast = c:request("echo", { "fast" })
        assert(c:wait_all({ slow, fast }))
        assert.same({ fast, slow }, { c.order[#c.order - 1], c.order[#c.order] })
        assert.is_true(c:call("notify", { "evt", 1 }))
        assert.same({ "evt", { 1 } }, { c.notifications[1].method, c.notifications[1].params })
        local big = string.rep("b", 3 * 1024 * 1024)
        assert.equal(#big, #c:call("echo", { big }, h.timeout(10)))
        local _, err = c:call("nosuch", {})
        assert.same({ code = 404, type = "no_such_method", message = "no such method 'nosuch'" }, err)
        c:request("drop", {})
        assert(c:wait_closed(3))
        assert.same({ 0, 0 }, { up:stop() })
        local none, cerr = h.client(up.addr)
        assert.is_nil(none)
        assert.matches("ECONNREFUSED", cerr)
    end)

    it("has a black hole that takes connections and bytes and never answers, until close()", function()
        local hole = h.black_hole()
        assert.equal("tcp://127.0.0.1:" .. hole.port, hole.addr)
        local c = assert(h.client(hole.addr))
        local id = assert(c:request("echo", { "x" }))
        assert(h.await(function() return #hole.held == 1 end, h.timeout(5)), "not accepted")
        assert.same({ nil, "timeout" }, { c:wait_response(id, 0.2) }) -- a bound on silence
        hole.close()
        assert(c:wait_closed())
        assert.is_nil(h.client(hole.addr)) -- the listener is gone too
    end)

    it("gives a raised error object as {code, type, message}, and raises when nothing was raised",
        function()
        assert.same({ 403, "forbidden", "no" },
            h.raised(function() error({ code = 403, type = "forbidden", message = "no" }) end))
        local ok, err = pcall(h.raised, function() return 1 end)
        assert.is_false(ok)
        assert.matches("expected an error, the call returned", err)
        ok, err = pcall(h.raised, function() error("plain", 0) end)
        assert.is_false(ok)
        assert.matches("expected an error object, got plain", err)
    end)

    it("closes the ghost.connect proxies it opened in cleanup()", function()
        local b = assert(h.start_backend([[
            require("ghost").serve({ echo = function(v) return v end }, arg[1])
        ]], { "tcp://127.0.0.1:0" }))
        local gw = h.ghost_connect(b.addr)
        assert.equal("x", gw:call("echo", "x"))
        assert.is_true(gw:is_connected())
        h.cleanup()
        assert.is_false(gw:is_connected())
    end)
end)

describe("Test kit: a real redis-server", function()
    after_each(h.cleanup)

    it("starts on a free loopback port, answers, and is stopped by PID", function()
        local r = assert(h.start_redis())
        assert.equal("PONG", r:cmd("PING"))
        assert.equal("OK", r:cmd("SET", "k", "v"))
        assert.equal("v", r:cmd("GET", "k"))
        assert.equal(0, r:stop())
        assert.is_true(r.proc.exited)
        local _, err = r:cmd("PING")
        assert.matches("Connection refused", err)
    end)

    it("restarts empty on the same port after kill -9", function()
        local r = assert(h.start_redis())
        assert.equal("OK", r:cmd("SET", "k", "v"))
        assert(r:kill())
        local r2 = assert(h.start_redis({ port = r.port }))
        assert.equal("", r2:cmd("GET", "k"))
    end)
end)
