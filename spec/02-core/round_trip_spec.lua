-- Forwarding: a call to `service.method` reaches the service's upstream as `method`, and the
-- upstream's answer comes back unchanged, byte for byte.
local h = require "spec.support.helpers"
local mp = h.mp

describe("A call through the gateway", function()
    local up, c

    before_each(function()
        local d = h.setup_demo()
        up, c = d.up, d.c
    end)

    after_each(h.cleanup)

    it("returns the upstream's result: demo.echo('hello') -> 'hello'", function()
        local res, err = c:call("demo.echo", { "hello" })
        assert.is_nil(err)
        assert.equal("hello", res)
    end)

    it("sends the method upstream without the service prefix", function()
        -- ghost-upstream knows `add`, not `demo.add`; its error names what it received.
        local res, err = c:call("demo.add", { 2, 40 })
        assert.is_nil(err)
        assert.equal(42, res)
        res, err = c:call("demo.nosuch", {})
        assert.is_nil(res)
        assert.same({ code = 404, type = "no_such_method", message = "no such method 'nosuch'" }, err)
    end)

    it("forwards params and results as raw bytes: nested maps, str, bin, big ints, floats, nil", function()
        local value = mp.map({
            nested = { 1, { 2, { 3, mp.map({ deep = true, list = { "a", mp.bin("b") } }) } } },
            str = "h\195\169llo, \0 world",
            bin = mp.bin("\0\1\2\255\254"),
            u64max = mp.uint64(0xffffffff, 0xffffffff),
            i64min = mp.int64(0x80000000, 0),
            above53 = mp.uint64(0x00200000, 1), -- 2^53 + 1: not representable as a double
            float = 1.5,
            negative = -123456789,
            null = mp.null,
            empty_map = mp.map({}),
            empty_array = {},
            ext = mp.raw("\214\5\1\2\3\4"), -- fixext4, type 5
            long_str = string.rep("s", 70000),
        })
        local sent = mp.encode(value)
        local id = assert(c:request("demo.echo", { value }))
        local r = assert(c:wait_response(id))
        assert.is_nil(r.error)
        assert.equal(#sent, #r.raw_result)
        assert.equal(mp.hex(sent), mp.hex(r.raw_result))
    end)

    it("returns nil when the upstream's result is nil", function()
        local id = assert(c:request("demo.echo", {}))
        local r = assert(c:wait_response(id))
        assert.is_nil(r.error)
        assert.equal("\192", r.raw_result)
        assert.equal("\192", r.raw_error)
    end)

    it("answers with the client's msgid, including 0 and 2^32 - 1", function()
        local ids = { 0, 1, 0x7fffffff, 0xffffffff }
        for _, id in ipairs(ids) do
            assert(c:request("demo.echo", { id }, id))
        end
        local rs = assert(c:wait_all(ids))
        for i, id in ipairs(ids) do
            assert.equal(id, rs[i].id)
            assert.equal(id, rs[i].result)
        end
        assert.equal(0, #c.duplicates)
    end)

    it("passes upstream application errors through unchanged", function()
        local direct = assert(h.client(up.addr))
        local did = assert(direct:request("fail", { "boom" }))
        local expected = assert(direct:wait_response(did))
        local id = assert(c:request("demo.fail", { "boom" }))
        local r = assert(c:wait_response(id))
        assert.same({ code = 1, type = "app_error", message = "boom" }, r.error)
        assert.is_nil(r.result)
        assert.equal(mp.hex(expected.raw_error), mp.hex(r.raw_error))
    end)

    it("keeps the connection usable after errors", function()
        local _, err = c:call("demo.fail", { "first" })
        assert.same({ code = 1, type = "app_error", message = "first" }, err)
        _, err = c:call("nosuch.echo", { 1 })
        assert(h.is_error(err, 404, "no_such_service"))
        local res
        res, err = c:call("demo.echo", { "still here" })
        assert.is_nil(err)
        assert.equal("still here", res)
    end)

    it("accepts any integer encoding of the msgid and a bin method name", function()
        local str = mp.encode("demo.echo")
        -- msgid 5 as uint8, uint16, uint32, uint64; method as str and as bin
        local forms = {
            { 5, "\204\5" }, { 6, "\205\0\6" }, { 7, "\206\0\0\0\7" },
            { 8, "\207\0\0\0\0\0\0\0\8" },
        }
        for _, f in ipairs(forms) do
            assert(c:send_raw("\148\0" .. f[2] .. str .. mp.encode({ f[1] })))
        end
        assert(c:send_raw(mp.encode({ 0, 9, mp.bin("demo.echo"), { 9 } })))
        for id = 5, 9 do
            local r = assert(c:wait_response(id))
            assert.is_nil(r.error)
            assert.equal(id, r.result)
        end
    end)
end)
