-- Values keep their shape through Lua: MessagePack nil inside an array or a map arrives as
-- ghost.null and goes back as nil, so a Lua backend (ghost.serve), a client (ghost.connect) and
-- an adapter (spec/07-legacy/adapter_spec.lua) pass any value on unchanged. Nil arguments and
-- results stay nil. Params over the library's decoding budget are refused before decoding (a
-- Lua table costs some 80 times the byte of an empty MessagePack array).
-- Real processes: the demo backend of `make run`, a gateway, the kit's raw MessagePack client.
local h = require "spec.support.helpers"
local mp = h.mp

local DEMO = "deploy/demo/service.lua"

local function hex(s) return (s:gsub(".", function(x) return ("%02x"):format(x:byte()) end)) end
local function unhex(s) return (s:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end

-- A backend that says what it received: "nil", "null" or the type of each argument.
local KINDS = [[
local ghost = require "ghost"
local t = {}
function t.kinds(...)
    local out = {}
    for i = 1, select("#", ...) do
        local v = select(i, ...)
        out[i] = v == nil and "nil" or v == ghost.null and "null" or type(v)
    end
    return { n = select("#", ...), kinds = out }
end
function t.nothing() return nil end
ghost.serve(t, arg[1])
]]

describe("Values keep their shape through Lua", function()
    local gw

    after_each(h.cleanup)

    it("demo.echo (the backend of make run) returns nils inside arrays and maps as they came", function()
        local backend = assert(h.start_backend(DEMO, { "tcp://127.0.0.1:0" }))
        local gateway = assert(h.start_gateway(h.demo_config(backend)))
        local c = assert(h.client(gateway.addr))
        local function echo(bytes)
            local id = assert(c:request("demo.echo", { mp.raw(bytes) }))
            local r = assert(c:wait_response(id))
            assert.is_nil(r.error)
            return hex(r.raw_result)
        end
        -- nil at the start, in the middle, at the end, alone, nested; maps with nil values
        for _, want in ipairs({ "93c001c0", "9301c003", "9301" .. "02c0", "91c0", "92c0c0",
            "9291c09391c0c0c0", "81a161c0", "9281a161c081a16292c3c0" }) do
            assert.equal(want, echo(unhex(want)))
        end
        -- {a: 1, b: [true, nil]}, as a stock msgpack-rpc client sends it: a map of two, in either order
        local back = echo(unhex("82a16101a16292c3c0"))
        assert.is_true(back == "82a16101a16292c3c0" or back == "82a16292c3c0a16101", back)
        -- nil itself is the result nil
        assert.equal("c0", echo("\192"))
    end)

    it("ghost.connect <-> ghost.serve: ghost.null round-trips, nil arguments and results stay nil",
        function()
            local f = h.setup_ghost({ demo = DEMO, vals = KINDS })
            local ghost = f.ghost
            gw = f.gw
            local null = ghost.null
            assert.equal("userdata", type(null))
            local r = gw.demo.echo({ null, 1, null })
            assert.equal(3, #r)
            assert.same({ null, 1, null }, r)
            r = gw.demo.echo({ a = null, b = { true, null } })
            assert.same({ a = null, b = { true, null } }, r)
            assert.equal(2, #r.b)
            assert.same({ { null }, {}, { x = { null } } }, gw.demo.echo({ { null }, {}, { x = { null } } }))
            -- arguments: nil is nil; ghost.null as an argument is sent as nil, so it is nil too
            assert.same({ n = 4, kinds = { "nil", "nil", "table", "number" } },
                gw.vals.kinds(nil, null, { null }, 1))
            assert.is_nil(gw.vals.nothing())
            assert.is_nil(gw.demo.echo(nil))
            assert.is_nil(gw.demo.echo(null))
        end)
end)

describe("The Lua library's decoding budget", function()
    local gw

    after_each(h.cleanup)

    it("refuses params of more than 1,000,000 values with 413 too_large by default, undecoded", function()
        local backend = assert(h.start_backend(DEMO, { "tcp://127.0.0.1:0" }))
        local c = assert(h.client(backend.addr))
        -- params [[] x 1000000]: 1000001 values
        local params = mp.raw("\221\0\15\66\64" .. ("\144"):rep(1000000))
        local id = assert(c:send_raw(mp.encode({ 0, 7, "echo", params })) and 7)
        local r = assert(c:wait_response(id, h.timeout(20)))
        assert.same({ code = 413, type = "too_large",
            message = "params have more than 1000000 values (max_values)" }, r.error)
        -- the connection goes on
        assert.equal("hi", (c:call("echo", { "hi" })))
        h.ghost() -- ghost.core on the path: the default is exported from C
        assert.equal(1000000, require("ghost.core").READ_MAX_VALUES)
    end)

    it("is max_values of ghost.serve (params) and of ghost.connect (responses)", function()
        local backend = assert(h.start_backend([[
            local ghost = require "ghost"
            local t = {}
            function t.echo(v) return v end
            function t.count(n) local out = {} for i = 1, n do out[i] = i end return out end
            ghost.serve(t, arg[1], { max_values = 10 })
        ]], { "tcp://127.0.0.1:0" }))
        local c = assert(h.client(backend.addr))
        -- params [[1 .. k]]: k + 2 values
        local function ints(k) local t = {} for i = 1, k do t[i] = i end return { t } end
        assert.equal(8, #assert(c:call("echo", ints(8))))
        local _, err = c:call("echo", ints(9))
        assert.same({ code = 413, type = "too_large",
            message = "params have more than 10 values (max_values)" }, err)
        -- a notification over it is dropped; the connection goes on
        assert(c:notify("echo", ints(9)))
        assert.equal("hi", (c:call("echo", { "hi" })))

        gw = h.ghost_connect(backend.addr, { max_values = 6 })
        -- a response [1, nil, [1 .. k]]: the error and the result, k + 2 values
        assert.same({ 1, 2, 3, 4 }, gw:call("count", 4))
        local t = gw:try()
        local r, e = t:call("count", 5)
        assert.is_nil(r)
        assert.same({ 502, "bad_response", "the response has more than 6 values (max_values)" },
            { e.code, e.type, e.message })
        assert.same({ 1 }, gw:call("count", 1)) -- the connection goes on
    end)
end)
