-- The guard on remote objects (docs/policies.md#guard, "Objects"): calls on the objects a
-- service hands out meet the guard's `objects` list with the object's method or attribute
-- name; the methods an object has are the interface its backend recorded, checked by the
-- gateway. Real ghostgate, real ghost.serve backend.
local h = require "spec.support.helpers"

local FILES = "spec/04-client/backends/files.lua"

-- [0, msgid, "$call", [<ext 65: id>, name, args]] on a raw connection; its response.
local function call_raw(c, id_bytes, name, args)
    local ext = "\199" .. string.char(#id_bytes) .. "\65" .. id_bytes
    return c:wait_response(assert(c:request("$call", { h.mp.raw(ext), name, args })))
end

describe("guard on remote objects", function()
    local gw, gateway

    local function setup(guard)
        local b = assert(h.start_backend(FILES, { "tcp://127.0.0.1:0" }, { name = "files" }))
        gateway = assert(h.start_gateway(([[
            return { listen = "tcp://127.0.0.1:0", drain_timeout = 2, services = {
                files = { upstream = %q, objects = true, policies = { guard %s } } } }
        ]]):format(b.addr, guard)))
        gw = h.ghost_connect(gateway.addr)
    end

    after_each(h.cleanup)

    it("lets through only the methods and attributes its objects list names", function()
        setup([[{ allow = { "open", "kept" }, objects = { "write", "count", "name" } }]])
        local file = gw.files.open("a.txt")
        assert.equal(1, file:write("x")) -- not in allow: object names meet `objects` only
        assert.equal(1, file:count())
        assert.equal("a.txt", file.name)
        assert.same({ 403, "forbidden", "'slow' is not allowed on objects of service 'files'" },
            h.raised(function() return file:slow(0) end))
        assert.same({ 403, "forbidden", "'lines' is not allowed on objects of service 'files'" },
            h.raised(function() return file.lines end))
        assert.same({ 403, "forbidden", "method 'live' is not exported by service 'files'" },
            h.raised(function() return gw.files.live() end))
        assert.same({ 403, "forbidden", "method 'write' is not exported by service 'files'" },
            h.raised(function() return gw.files.write() end)) -- the objects list is not `allow`
    end)

    it("guards calls on promises the same way", function()
        setup([[{ allow = { "open", "kept" }, objects = { "count" } }]])
        assert.equal(0, gw.files.open:promise("b.txt"):count())
        local p = gw.files.open:promise("c.txt")
        assert.same({ 403, "forbidden", "'write' is not allowed on objects of service 'files'" },
            h.raised(function() return p:write("x") end))
        assert.equal(0, p:count())
    end)

    it("refuses '_' names and names outside the recorded interface whatever the list says", function()
        setup([[{ objects = { "*" } }]])
        local c = assert(h.client(gateway.addr))
        local r = assert(c:wait_response(assert(c:request("files.open", { "a.txt" }))))
        local id = r.raw_result:match("^\199.\064\146(.+)\147")
        assert.is_not_nil(id)
        r = assert(call_raw(c, id, "_wipe", {}))
        assert.same({ 403, "forbidden", "method '_wipe' is private" },
            { r.error.code, r.error.type, r.error.message })
        -- "lines" is a field of the object, not a method its backend listed
        r = assert(call_raw(c, id, "lines", {}))
        assert.same({ 404, "the object has no method 'lines'" }, { r.error.code, r.error.message })
        r = assert(call_raw(c, id, "write", { "ok" }))
        assert.is_nil(r.error)
        assert.equal(1, r.result)
    end)

    it("without an objects list, object calls meet allow like methods", function()
        setup([[{ allow = { "open", "count" } }]])
        local file = gw.files.open("a.txt")
        assert.equal(0, file:count())
        assert.same({ 403, "forbidden", "'write' is not allowed on objects of service 'files'" },
            h.raised(function() return file:write("no") end))
    end)
end)
