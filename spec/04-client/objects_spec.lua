-- Remote objects and callbacks between ghost.connect and ghost.serve (docs/client.md, "Remote
-- objects and callbacks"; the wire format in docs/protocol.md, "Remote objects"): a backend
-- hands out objects with ghost.ref, a client passes functions, both sides call each other on
-- one connection, and references are counted and released. Peer to peer, real processes.
local h = require "spec.support.helpers"

local FILES = "spec/04-client/backends/files.lua"

describe("Remote objects", function()
    local ghost, b, gw

    local function collect()
        collectgarbage()
        collectgarbage()
    end

    -- Poll fn (a ghost call) until it returns true: the loop runs meanwhile, and so does the
    -- GC (results of the last loop turn stay referenced until the next one).
    local function eventually(fn, what)
        local deadline = ghost.now() + h.timeout(5)
        while ghost.now() < deadline do
            if fn() then return true end
            ghost.sleep(0.02)
            collect()
        end
        error("never happened: " .. what, 2)
    end

    before_each(function()
        ghost = h.ghost()
        b = assert(h.start_backend(FILES, { "tcp://127.0.0.1:0" }, { name = "files" }))
        gw = assert(ghost.connect(b.addr, { timeout = h.timeout(5) }))
    end)

    after_each(function()
        if gw then gw:close() end
        gw = nil
        collect()
        h.cleanup()
    end)

    describe("ghost.ref", function()
        it("hands a table out by reference: methods with ':', attributes with '.', items with [k]", function()
            local f = gw.open("a.txt")
            assert.is_true(ghost.is_remote(f))
            assert.equal(1, f:write("hello"))
            assert.equal(2, f:write("world"))
            assert.equal(2, f:count())
            assert.equal("a.txt", f.name)                 -- an attribute, fetched on access
            assert.same({ "hello", "world" }, f.lines)    -- copied: a plain table goes by value
            assert.equal("a.txt", f["name"])
            assert.is_nil(f.nothing)
            assert.matches("^ghost object %d+ %(tcp://", tostring(f))
        end)

        it("gives one proxy per remote object: the same object twice is the same proxy (==)", function()
            local a, a2 = gw.shared(), gw.shared()
            assert.equal(a, a2)
            assert.is_true(rawequal(a, a2))
            assert.equal("hi", a:hello())
            local f, g = gw.open("x"), gw.open("x")
            assert.are_not.equal(f, g)
        end)

        it("passes a proxy back to its owner as the owner's own object", function()
            local f = gw.open("a.txt")
            f:write("one")
            -- nest's cb receives n; here the object goes out and comes back through a callback
            local seen
            gw.nest(function(n) seen = n; return 0 end, 1)
            assert.equal(0, seen)
            assert.equal(1, f:count())
        end)

        it("refuses private names with 403 forbidden and names outside the interface with 404", function()
            local f = gw.open("a.txt")
            local ok, err = pcall(function() return f._secret end)
            assert.is_false(ok)
            assert.same({ 403, "forbidden" }, { err.code, err.type })
            assert.matches("attribute '_secret' is private", err.message)
            local p = ghost.promise(f, "_wipe")
            ok, err = pcall(p.wait, p)
            assert.is_false(ok)
            assert.same({ 403, "forbidden" }, { err.code, err.type })
            p = ghost.promise(f, "delete")
            ok, err = pcall(p.wait, p)
            assert.is_false(ok)
            assert.same({ 404, "no_such_method" }, { err.code, err.type })
            assert.equal("the object has no method 'delete'", err.message)
        end)

        it("a backend stopped with SIGTERM answers the object calls in flight, then exits 0", function()
            local f = gw.open("a.txt")
            local p = ghost.promise(f, "slow", 0.3)
            assert.equal(1, gw.live()) -- on the same connection: the slow call has arrived
            b.proc:kill("sigterm")
            assert.equal("done", p:wait())
            assert.equal(0, (b:wait_exit(h.timeout(5))))
        end)

        it("reads only: assigning to a remote object is an error, not a call", function()
            local f = gw.open("a.txt")
            assert.has_error(function() f.name = "b" end,
                "ghost remote objects are read-only (assigning 'name')")
        end)
    end)

    describe("functions", function()
        it("go by reference: the backend calls back while the call waits, and later", function()
            local events = {}
            assert.is_true(gw.watch("a.txt", function(n, what) events[#events + 1] = n .. " " .. what end))
            assert.same({ "a.txt opened" }, events)
            eventually(function() return #events == 2 end, "the later callback")
            assert.same({ "a.txt opened", "a.txt later" }, events)
        end)

        it("nest: callbacks inside calls inside callbacks, 50 deep", function()
            local function cb(n) return gw.nest(cb, n) end
            assert.equal(50, gw.nest(cb, 50))
        end)

        it("answer in any order: two callbacks in flight, the first called answers last", function()
            local order = {}
            local res = gw.race(function(s, tag)
                ghost.sleep(s)
                order[#order + 1] = tag
                return tag
            end)
            assert.same({ "slow", "fast" }, res)
            assert.same({ "fast", "slow" }, order)
        end)

        it("are stored and called later, from a task too", function()
            local sum = 0
            assert.equal(1, gw.subscribe(function(v) sum = sum + v; return 1 end))
            assert.equal(2, gw.subscribe(function(v) sum = sum + 2 * v; return 1 end))
            assert.equal(2, gw.publish(10))
            assert.equal(30, sum)
            local t = ghost.spawn(function() return gw.publish(1) end)
            assert.equal(2, t:wait())
            assert.equal(33, sum)
        end)

        it("fail with 410 object_gone in the backend, promptly, when their owner dies mid-call", function()
            local r = h.start_backend([[
                local ghost = require "ghost"
                local gw = assert(ghost.connect(arg[1]))
                gw.hang(function() ghost.sleep(60) end)
                ghost.serve({ ping = function() return true end }, "tcp://127.0.0.1:0")
            ]], { b.addr }, { name = "owner" })
            assert(r)
            r.proc.strict = false
            r:kill("sigkill")
            assert(r:wait_exit(h.timeout(5)))
            local t0 = ghost.now()
            eventually(function() return gw.last_error() ~= nil end, "the callback to fail")
            assert.same({ code = 410, type = "object_gone" }, gw.last_error())
            assert.is_true(ghost.now() - t0 < 2)
        end)
    end)

    describe("distributed GC", function()
        it("a dropped proxy is released: the backend's exports return to their start", function()
            local start = gw.live()
            local f = gw.open("a.txt") -- luacheck: ignore 231 (dropped below)
            assert.equal(start + 1, gw.live())
            assert.equal(1, ghost.stats().imports)
            f = nil
            collect()
            eventually(function() return gw.live() == start end, "the release")
            assert.equal(0, ghost.stats().imports)
        end)

        it("1,000 references dropped at once are released in one turn; exports return to their start",
            function()
            local start = gw.live()
            local list = gw.many(1000)
            assert.equal(1000, #list)
            assert.equal(500, list[500]:id())
            assert.equal(start + 1000, gw.live())
            local sent = ghost.stats().releases_sent
            list = nil -- luacheck: ignore 311
            collect()
            eventually(function() return gw.live() == start end, "the releases")
            assert.equal(sent + 1000, ghost.stats().releases_sent)
        end)

        it("counts references: an object received again while its release is in flight stays alive",
            function()
            local start = gw.live()
            local a = gw.shared() -- luacheck: ignore 231 (dropped below)
            assert.equal(start + 1, gw.live())
            a = nil
            collect() -- the release is queued, not sent: it goes out with the next loop turn
            local a2 = gw.shared() -- request first, then the release, on the same connection
            assert.equal("hi", a2:hello())
            assert.equal(start + 1, gw.live())
            assert.equal(0, ghost.stats().bad_releases)
        end)

        it("a call then a release in the same loop turn: the call is served first", function()
            local f = gw.open("a.txt")
            local p = ghost.promise(f, "write", "x")
            f = nil -- luacheck: ignore 311
            collect()
            assert.equal(1, p:wait())
        end)

        it("a backend whose connection dies makes every reference into it fail with 410 object_gone",
            function()
            local f = gw.open("a.txt")
            local g = gw.shared()
            b.proc.strict = false
            b:kill("sigkill")
            assert(b:wait_exit(h.timeout(5)))
            for _, obj in ipairs({ f, g }) do
                local ok, err = pcall(function() return obj:count() end)
                if obj == g then ok, err = pcall(function() return obj:hello() end) end
                assert.is_false(ok)
                assert.same({ 410, "object_gone" }, { err.code, err.type })
            end
        end)
    end)

    describe("ids", function()
        local function call_raw(c, id_bytes)
            -- [0, msgid, "$call", [<ext 65: id>, "count", []]]
            local ext = "\199" .. string.char(#id_bytes) .. "\65" .. id_bytes
            return c:wait_response(assert(c:request("$call", { h.mp.raw(ext), "count", {} })))
        end

        it("a forged or foreign id gets 410 object_gone, and nothing runs", function()
            local f = gw.open("a.txt")
            assert.equal(0, f:count())
            local c = assert(h.client(b.addr))
            for _, id in ipairs({ "\1", "\205\3\231" }) do -- 1 (another connection's), 999
                local r = assert(call_raw(c, id))
                assert.same({ 410, "object_gone" }, { r.error.code, r.error.type })
                assert.matches("^no object %d+ on this connection", r.error.message)
            end
            assert.equal(0, f:count())
        end)

        it("a stale id (released) gets 410, and over-releases are ignored and counted", function()
            local c = assert(h.client(b.addr))
            local r = assert(c:wait_response(assert(c:request("open", { "a.txt" }))))
            assert.is_nil(r.error)
            local start = gw.live()
            assert(c:notify("$release", { { { 1, 5 } } }))   -- more than it holds: ignored
            r = assert(call_raw(c, "\1"))
            assert.is_nil(r.error)
            assert.equal(0, r.result)
            assert(c:notify("$release", { { { 1, 1 } } }))
            eventually(function() return gw.live() == start - 1 end, "the release")
            r = assert(call_raw(c, "\1"))
            assert.same({ 410, "object_gone" }, { r.error.code, r.error.type })
        end)
    end)

    describe("promise pipelining", function()
        it("sends the call at once; a method called on the promise targets its result", function()
            local p = gw.open:promise("b.txt")
            assert.equal(0, p:count())
            local f = p:wait()
            assert.is_true(ghost.is_remote(f))
            assert.equal("b.txt", f.name)
        end)

        it("propagates the first call's error to calls on its promise", function()
            local p = gw.open:promise("")
            local ok, err = pcall(p.count, p)
            assert.is_false(ok)
            assert.same({ 422, "bad_name", "a file needs a name" }, { err.code, err.type, err.message })
            ok, err = pcall(p.wait, p)
            assert.is_false(ok)
            assert.equal("bad_name", err.type)
        end)

        it("keeps answers only until the promise is dropped ($finish)", function()
            local p = gw.open:promise("b.txt")
            assert.equal(0, p:count())
            p = nil -- luacheck: ignore 311
            collect()
            eventually(function() return gw.live() == 0 end, "the finish and the release")
        end)
    end)

    describe("on the wire", function()
        it("a reference is ext 64 [id, interface]; ghost.ext_types changes the numbers", function()
            local c = assert(h.client(b.addr))
            local r = assert(c:wait_response(assert(c:request("open", { "a.txt" }))))
            -- c7 LEN 40 | 92 01 93 a5 "count" a4 "slow" a5 "write"
            assert.equal("\199\020\064\146\001\147\165count\164slow\165write", r.raw_result)
            local b2 = assert(h.start_backend([[
                local ghost = require "ghost"
                ghost.ext_types({ object = 70, yours = 71, promise = 72 })
                ghost.serve({ open = function(name) return ghost.ref({ name = name,
                    count = function() return 0 end }) end }, "tcp://127.0.0.1:0")
            ]], { }, { name = "ext70" }))
            local c2 = assert(h.client(b2.addr))
            r = assert(c2:wait_response(assert(c2:request("open", { "x" }))))
            assert.equal("\199\009\070\146\001\145\165count", r.raw_result)
            local before = ghost.ext_types()
            assert.same({ object = 64, yours = 65, promise = 66 }, before)
            ghost.ext_types({ object = 70, yours = 71, promise = 72 })
            local ok, n = pcall(function()
                local gw2 = assert(ghost.connect(b2.addr))
                local n = gw2.open("x"):count()
                gw2:close()
                return n
            end)
            ghost.ext_types(before) -- (the whole process uses one set of numbers)
            assert.is_true(ok, tostring(n))
            assert.equal(0, n)
            assert.has_error(function() ghost.ext_types({ object = 1 }) end,
                "ghost.ext_types: object: ext types 0-2 are reserved (neovim's handles)")
            assert.has_error(function() ghost.ext_types({ yours = 64 }) end,
                "ghost.ext_types: 64 is used twice")
        end)

        it("answers malformed $ requests with 400 bad_request and keeps serving", function()
            local c = assert(h.client(b.addr))
            for _, params in ipairs({ {}, { "x" }, { h.mp.null, "open", "notalist" },
                { h.mp.raw("\212\065\192"), "count", {} }, { 42, "count", {} } }) do
                local r = assert(c:wait_response(assert(c:request("$call", params))))
                assert.is_table(r.error, h.serialize(params))
                assert.truthy(r.error.code == 400 or r.error.code == 410 or r.error.code == 404,
                    h.serialize(r.error))
            end
            local r = assert(c:wait_response(assert(c:request("$nope", {}))))
            assert.same({ 404, "no_such_method" }, { r.error.code, r.error.type })
            assert(c:notify("$release", { "garbage" }))
            assert(c:notify("$finish", { {} }))
            assert.equal(0, gw.live())
        end)
    end)

    it("ghost.stats() counts what this process exports and imports", function()
        local s = ghost.stats()
        assert.equal("number", type(s.exports))
        assert.equal("number", type(s.imports))
        assert.equal("number", type(s.answers))
        local f = gw.open("a.txt")
        assert.equal(s.imports + 1, ghost.stats().imports)
        assert.equal(f, f)
    end)
end)
