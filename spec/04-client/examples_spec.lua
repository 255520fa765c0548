-- The README's Lua examples are files (deploy/examples/) that this spec runs exactly as the
-- README shows them, so they cannot rot; and the demo backend of `make run`
-- (deploy/demo/service.lua) answers through the gateway.
local h = require "spec.support.helpers"

describe("The README's Lua examples", function()
    after_each(h.cleanup)

    it("are in the README verbatim: deploy/examples/backend.lua and client.lua", function()
        local readme = assert(h.read_file("README.md"))
        for _, f in ipairs({ "deploy/examples/backend.lua", "deploy/examples/client.lua" }) do
            local text = assert(h.read_file(f))
            assert.is_truthy(readme:find("```lua\n" .. text .. "```", 1, true), f .. " is not in README.md")
            local _, lines = text:gsub("\n", "")
            assert.is_true(lines <= 10, f .. " has " .. lines .. " lines")
        end
    end)

    it("run as shown: the backend under ghostgate run, the client under plain luajit and ghostgate run",
        function()
            local backend = assert(h.start_backend("deploy/examples/backend.lua",
                { "tcp://127.0.0.1:" .. h.unused_port() }))
            assert.same({ "add", "divide" }, backend.methods)
            local gw = assert(h.start_gateway({ services = { calc = { upstream = backend.addr } } }))
            for _, luajit in ipairs({ true, false }) do
                local r = assert(h.run_lua("deploy/examples/client.lua", { gw.addr }, { luajit = luajit }))
                assert.equal(0, r.code, r.output)
                local lines = h.split(r.stdout, "\n")
                assert.equal("42", lines[1])
                assert.matches("^false\truntime_error\t.*backend%.lua:%d+: division by zero$", lines[2])
                assert.equal("3\t7", lines[3])
                assert.equal(3, #lines)
            end
        end)
end)

describe("The demo backend of make run", function()
    after_each(h.cleanup)

    it("serves echo, add, upper, time, sleep, fail and info through the gateway", function()
        local backend = assert(h.start_backend("deploy/demo/service.lua", { "tcp://127.0.0.1:0" }))
        assert.same({ "add", "echo", "fail", "info", "sleep", "time", "upper" }, backend.methods)
        local gw = assert(h.start_gateway(h.demo_config(backend)))
        local c = assert(h.client(gw.addr))
        assert.equal("hello", (c:call("demo.echo", { "hello" })))
        assert.equal(42, (c:call("demo.add", { 2, 40 })))
        assert.equal("LOUD", (c:call("demo.upper", { "loud" })))
        assert.is_number((c:call("demo.time", {})))
        local _, err = c:call("demo.upper", { 1 })
        assert.same({ 400, "bad_request" }, { err.code, err.type })
        _, err = c:call("demo.fail", { "on purpose" })
        assert.same({ 500, "runtime_error" }, { err.code, err.type })
        assert.is_nil(err.traceback) -- kept by the gateway: the service has no error_details
        -- the CLI the run-demo banner suggests
        local r = assert(h.run(h.bin("ghostgate"), { "call", "-a", gw.addr, "demo.echo", '"hello"' }))
        assert.equal(0, r.code)
        assert.equal('"hello"', r.stdout)
    end)
end)

describe("The remote-objects example of docs/client.md", function()
    after_each(h.cleanup)

    it("runs as shown, peer to peer: the backend under ghostgate run, the client under ghostgate run",
        function()
            local doc = assert(h.read_file("docs/client.md"))
            local block = assert(doc:match("## Remote objects and callbacks.-```lua\n(.-)```"))
            local backend, client = block:match("^(.-)\n%-%- client\n(.*)$")
            assert(backend and client, "the example has a backend part and a '-- client' part")
            local b = assert(h.start_backend(backend, { "tcp://127.0.0.1:0" }, { name = "files" }))
            client = client:gsub("tcp://127%.0%.0%.1:9002", b.addr)
            local r = assert(h.run_lua(client, {}))
            assert.equal(0, r.code, r.output)
            assert.equal("1\t1\na.txt\nevent\ta.txt\topened\nevent\ta.txt\tlater\n0\n0",
                (r.stdout:gsub("\n$", "")))
        end)
end)

describe("The remote-objects example of README.md", function()
    after_each(h.cleanup)

    it("runs as shown through a real gateway: files.lua backend, objects = true, the client", function()
        local readme = assert(h.read_file("README.md"))
        local section = assert(readme:match("\n## Remote objects and callbacks\n(.-)\n## "))
        local blocks = {}
        for code in section:gmatch("```lua\n(.-)```") do blocks[#blocks + 1] = code end
        assert.equal(3, #blocks, "a backend, a config and a client")
        local b = assert(h.start_backend(blocks[1], { "tcp://127.0.0.1:0" }, { name = "files" }))
        local config = blocks[2]:gsub("tcp://127%.0%.0%.1:9002", b.addr)
        config = config:gsub("^return {", 'return { listen = "tcp://127.0.0.1:0", drain_timeout = 2,')
        local gateway = assert(h.start_gateway(config))
        local client = blocks[3]:gsub("tcp://127%.0%.0%.1:7420", gateway.addr)
        local r = assert(h.run_lua(client, {}))
        assert.equal(0, r.code, r.output)
        assert.equal("1\t1\na.txt\nevent\ta.txt\topened\nevent\ta.txt\tlater\n0\n0",
            (r.stdout:gsub("\n$", "")))
    end)
end)
