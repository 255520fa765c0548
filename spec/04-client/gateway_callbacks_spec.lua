-- Callbacks through the gateway (docs/protocol.md, "Callbacks through the gateway"): functions
-- and objects a client passes to a service with `objects = true` are recorded in the client's
-- table and given to the upstream connection that carries the call under an id the gateway
-- chose; the upstream's $call/$get on that id goes to the owning client as the gateway's own
-- request, and the answer comes back. Real ghostgate, real ghost.serve backends, and a stock
-- MessagePack-RPC client and upstream written by hand.
local h = require "spec.support.helpers"
local http = require "spec.support.http"
local uv = require "luv"

local BACKEND = "spec/04-client/backends/callbacks.lua"

-- ext 64 [id, interface] and ext 65 id, as raw MessagePack (ids below 128).
local function object_ext(id, iface)
    local body = h.mp.encode({ id, iface })
    if #body > 255 then -- ext 16
        return h.mp.raw("\200" .. string.char(math.floor(#body / 256), #body % 256) .. "\64" .. body)
    end
    return h.mp.raw("\199" .. string.char(#body) .. "\64" .. body)
end
local function yours_ext(id_bytes)
    return h.mp.raw("\199" .. string.char(#id_bytes) .. "\65" .. id_bytes)
end

-- A hand-written MessagePack-RPC upstream: the first connection's messages are collected,
-- `send` writes a message to it.
local function raw_upstream()
    local srv = uv.new_tcp()
    assert(srv:bind("127.0.0.1", 0))
    local up = { msgs = {}, buf = "" }
    assert(srv:listen(16, function()
        local conn = uv.new_tcp()
        srv:accept(conn)
        up.conn = conn
        conn:read_start(function(_, data)
            if not data then return end
            up.buf = up.buf .. data
            while #up.buf > 0 do
                local stop = h.mp.frame(up.buf, 1)
                if not stop then break end
                local raw = up.buf:sub(1, stop - 1)
                up.buf = up.buf:sub(stop)
                up.msgs[#up.msgs + 1] = { msg = h.mp.decode(raw), raw = raw, els = h.mp.elements(raw) }
            end
        end)
    end))
    up.addr = "tcp://127.0.0.1:" .. srv:getsockname().port
    function up.send(t) up.conn:write(h.mp.encode(t)) end
    function up.wait(pred)
        local found
        h.await(function()
            for _, m in ipairs(up.msgs) do
                if pred(m.msg) then found = m; return true end
            end
        end, h.timeout(5))
        return found
    end
    function up.close()
        if up.conn and not up.conn:is_closing() then up.conn:close() end
        if not srv:is_closing() then srv:close() end
    end
    return up
end

describe("Callbacks through the gateway", function()
    local ghost, gw, f

    local function setup(opts, svc)
        svc = svc or {}
        svc.script, svc.objects = BACKEND, true
        f = h.setup_ghost({ cbs = svc }, opts)
        ghost, gw = f.ghost, f.gw
    end

    -- In-process ghost clients run their loop while they wait: poll cond until true.
    local function eventually(cond, timeout)
        local deadline = ghost.now() + (timeout or h.timeout(5))
        local v = cond()
        while not v and ghost.now() < deadline do
            ghost.sleep(0.01)
            v = cond()
        end
        return v
    end

    after_each(h.cleanup)

    it("calls a function the client passed while the client waits, and after the call returned",
        function()
        setup()
        local events = {}
        assert.is_true(gw.cbs.watch("a.txt", function(n, what) events[#events + 1] = n .. " " .. what end))
        assert.same({ "a.txt opened" }, events) -- during the call
        assert.truthy(eventually(function() return #events == 2 end))
        assert.same({ "a.txt opened", "a.txt later" }, events)
        gw.cbs.gc() -- a round trip after the answer: it has left before the client closes
    end)

    it("keeps a stored callback: the backend calls it later, for a call of another client", function()
        setup()
        local got = {}
        assert.equal(1, gw.cbs.subscribe(function(v) got[#got + 1] = v; return 10 end))
        local other = h.ghost_connect(f.gateway.addr)
        assert.equal(10, other.cbs.publish("x"))
        assert.equal(10, other.cbs.publish("y"))
        assert.same({ "x", "y" }, got)
        other:close()
    end)

    it("nests callbacks 50 deep through the gateway, with answers out of LIFO order", function()
        setup()
        local order = {}
        local cb
        cb = function(k)
            if k == 25 then -- halfway down: two callbacks at once, the first one answers last
                local r = gw.cbs.race(function(wait, name)
                    ghost.sleep(wait)
                    order[#order + 1] = name
                    return name
                end)
                assert.same({ "slow", "fast" }, r)
            end
            return gw.cbs.nest(cb, k)
        end
        assert.equal(50, gw.cbs.nest(cb, 50))
        assert.same({ "fast", "slow" }, order)
    end)

    it("passes objects both ways in a callback's arguments and result", function()
        setup()
        local got
        local r = gw.cbs.exchange(function(file)
            got = file
            assert.is_true(ghost.is_remote(file))
            assert.equal(1, file:write("from the client")) -- a call on the backend's object, nested
            return ghost.ref({ hello = function() return "hello from the client" end })
        end)
        assert.equal("hello from the client:1", r)
        assert.equal("exchanged", got.name)
        local file = gw.cbs.open("b.txt") -- and a function in a call on a backend's object
        assert.equal("b.txt!", file:on(function(name) return name .. "!" end))
    end)

    it("releases the client's functions once the backend dropped them ($release reaches the client)",
        function()
        setup()
        local start = ghost.stats().exports
        local events = 0
        assert.is_true(gw.cbs.watch("a", function() events = events + 1 end))
        assert.equal(start + 1, ghost.stats().exports)
        assert.truthy(eventually(function() return events == 2 end))
        -- the spawned task has ended: the backend's proxy is garbage once collected
        assert.truthy(eventually(function()
            gw.cbs.gc()
            return ghost.stats().exports == start
        end))
        assert.equal(start, ghost.stats().exports)
    end)

    it("releases the client's functions an upstream connection held when it dies", function()
        setup()
        local start = ghost.stats().exports
        gw.cbs.subscribe(function() return 1 end)
        gw.cbs.subscribe(ghost.ref({ ping = function() return "pong" end }))
        assert.equal(start + 2, ghost.stats().exports)
        local b = f.backends.cbs
        b.proc.strict = false
        b:kill("sigkill")
        assert(b:wait_exit(h.timeout(5)))
        assert.truthy(eventually(function() return ghost.stats().exports == start end))
        assert.equal(start, ghost.stats().exports)
    end)

    it("refuses a callback into a client that disconnected with 410, promptly", function()
        setup()
        local c = assert(h.client(f.gateway.addr))
        -- cbs.hang(<a function of the raw client's>): the backend calls it in a task of its own
        local id = assert(c:request("cbs.hang", { object_ext(7, { "" }) }))
        local r = assert(c:wait_response(id))
        assert.is_nil(r.error)
        assert.truthy(h.await(function() return #c.unexpected > 0 end)) -- the callback arrived
        local req = h.mp.decode(c.unexpected[1])
        assert.same({ 0, "$call" }, { req[1], req[3] })
        local t0 = ghost.now()
        c:close() -- mid-callback
        local last = eventually(function() return gw.cbs.last_error() end)
        assert.is_true(ghost.now() - t0 < 1)
        assert.same({ 410, "object_gone" }, { last.code, last.type })
        assert.matches("its client disconnected", last.message)
        -- and a stored one, called later
        c = assert(h.client(f.gateway.addr))
        assert.is_nil(assert(c:wait_response(assert(c:request("cbs.subscribe",
            { object_ext(3, { "" }) })))).error)
        c:close()
        local ok, err
        assert.truthy(eventually(function()
            ok, err = pcall(function() return gw.cbs.publish(1) end)
            return not ok and err.code == 410
        end))
        assert.same({ 410, "object_gone" }, { err.code, err.type })
        assert.matches("its client disconnected", err.message)
    end)

    it("answers 504 to the backend when the client never answers a callback", function()
        setup(nil, { deadline = 1 })
        local c = assert(h.client(f.gateway.addr))
        assert.is_nil(assert(c:wait_response(assert(c:request("cbs.hang", { object_ext(7, { "" }) })))).error)
        assert.truthy(h.await(function() return #c.unexpected > 0 end))
        local req = h.mp.decode(c.unexpected[1])
        local last = eventually(function() return gw.cbs.last_error() end)
        assert.same({ 504, "deadline_exceeded" }, { last.code, last.type })
        assert.equal("the client did not answer the callback within 1.000 s", last.message)
        -- a late answer is dropped; the connection goes on
        assert(c:send_raw(h.mp.encode({ 1, req[2], h.mp.null or nil, "late" })))
        assert.is_nil(assert(c:wait_response(assert(c:request("cbs.last_error", {})))).error)
    end)

    it("limits the depth of nested callbacks (limits.max_callback_depth): 503, nothing lost", function()
        setup({ config = { limits = { max_callback_depth = 5 } } })
        local cb
        cb = function(k) return gw.cbs.nest(cb, k) end
        assert.equal(5, gw.cbs.nest(cb, 5))
        local ok, err = pcall(function() return gw.cbs.nest(cb, 8) end)
        assert.is_false(ok)
        assert.equal(503, err.code)
        assert.matches("callbacks nested deeper than limits.max_callback_depth %(5%)", err.message)
        assert.equal(5, gw.cbs.nest(cb, 5)) -- the gateway and the client go on
        assert(f.gateway:wait_log('callback_refused service=cbs name="" code=503'))
    end)

    it("limits callbacks in flight per client (limits.max_callbacks_in_flight): 503 for the rest",
        function()
        setup({ config = { limits = { max_callbacks_in_flight = 3 } } })
        -- the three let through stay in flight while the other two arrive
        local r = gw.cbs.fan(function(i) ghost.sleep(0.1 + 0.05 * i); return true end, 5)
        table.sort(r, function(a, b) return tostring(a) < tostring(b) end)
        assert.same({ 503, 503, "ok", "ok", "ok" }, r)
        assert.same({ "ok", "ok", "ok" }, gw.cbs.fan(function() return true end, 3))
    end)

    it("counts the client's functions against limits.max_refs_per_client", function()
        setup({ config = { limits = { max_refs_per_client = 3 } } })
        local fns = {}
        for i = 1, 4 do fns[i] = function() return i end end
        local ok, err = pcall(function() return gw.cbs.subscribe({ fns[1], fns[2], fns[3], fns[4] }) end)
        assert.is_false(ok)
        assert.same({ 503, "overloaded",
            "the connection holds limits.max_refs_per_client references already" },
            { err.code, err.type, err.message })
        assert.equal(1, gw.cbs.subscribe(fns[1])) -- under the limit
    end)

    it("counts client objects upstreams hold in /metrics (side=\"client_owned\")", function()
        setup({ config = { admin = { listen = "127.0.0.1:0" } } })
        local admin = assert(f.gateway:wait_log("http_listening kind=admin ", h.timeout(2)))
        admin = "http://" .. admin:match("listen=tcp://(%S+)")
        local function owned()
            local m = http.metrics(assert(http.get(admin .. "/metrics")).body)
            return http.sample(m, "ghostgate_object_refs", { service = "cbs", side = "client_owned" })
        end
        assert.equal(0, owned())
        gw.cbs.subscribe(function() return 1 end)
        gw.cbs.subscribe(function() return 2 end)
        assert.equal(2, owned())
        gw.cbs.forget()
        assert.truthy(eventually(function() gw.cbs.gc(); return owned() == 0 end))
    end)
end)

describe("Callbacks through the gateway, by hand (stock MessagePack-RPC peers)", function()
    local up, gateway

    after_each(function()
        if up then up.close() end
        up = nil
        h.cleanup()
    end)

    local function start()
        up = raw_upstream()
        gateway = assert(h.start_gateway(([[
            return { listen = "tcp://127.0.0.1:0", drain_timeout = 2, services = {
                raw = { upstream = %q, objects = true, deadline = 5, connections = 1 } } }
        ]]):format(up.addr)))
    end

    -- The client passes its function 7 in raw.take; the upstream answers; returns the ext the
    -- upstream got (ext 64 [G, [""]]) and G's bytes.
    local function pass_function(c)
        local id = assert(c:request("raw.take", { object_ext(7, { "" }) }))
        local m = up.wait(function(t) return t[1] == 0 and t[3] == "take" end)
        local g = m.raw:match("\199.\64\146(.-)\145\160$")
        assert.is_not_nil(g, h.mp.hex(m.raw))
        assert.are_not.equal("\7", g) -- the gateway's id, not the client's
        up.send({ 1, m.msg[2], h.mp.null, true })
        assert.is_nil(assert(c:wait_response(id)).error)
        return g
    end

    it("routes an upstream's $call to the client that owns the function, and the client's answer back",
        function()
        start()
        local c = assert(h.client(gateway.addr))
        local g = pass_function(c)
        up.send({ 0, 100, "$call", { yours_ext(g), "", { "ping" } } })
        assert.truthy(h.await(function() return #c.unexpected > 0 end))
        local req = h.mp.decode(c.unexpected[1])
        assert.equal("$call", req[3])
        -- [ext 65 7 (its own id), "", ["ping"]]
        assert.equal("\147\212\65\7\160\145\164ping", h.mp.elements(c.unexpected[1])[4])
        assert.same({ "ping" }, req[4][3])
        assert(c:send_raw(h.mp.encode({ 1, req[2], h.mp.null, "pong" })))
        local a = up.wait(function(t) return t[1] == 1 and t[2] == 100 end)
        assert.is_nil(a.msg[3])
        assert.equal("pong", a.msg[4])
    end)

    it("takes several answers to callbacks in one read, in any order", function()
        start()
        local c = assert(h.client(gateway.addr))
        local g = pass_function(c)
        for i = 1, 3 do up.send({ 0, 60 + i, "$call", { yours_ext(g), "", { i } } }) end
        assert.truthy(h.await(function() return #c.unexpected == 3 end))
        local out = {}
        for i = 3, 1, -1 do
            local req = h.mp.decode(c.unexpected[i])
            out[#out + 1] = h.mp.encode({ 1, req[2], h.mp.null, req[4][3][1] * 10 })
        end
        assert(c:send_raw(table.concat(out)))
        for i = 1, 3 do
            local a = up.wait(function(t) return t[1] == 1 and t[2] == 60 + i end)
            assert.is_not_nil(a, "answer " .. i)
            assert.equal(i * 10, a.msg[4])
        end
    end)

    it("passes a $get of an item (a key that is not a string) to the client as it is", function()
        start()
        local c = assert(h.client(gateway.addr))
        local g = pass_function(c)
        up.send({ 0, 50, "$get", { yours_ext(g), 2 } })
        assert.truthy(h.await(function() return #c.unexpected > 0 end))
        local req = h.mp.decode(c.unexpected[1])
        assert.same({ 0, "$get", 2 }, { req[1], req[3], req[4][2] })
        assert(c:send_raw(h.mp.encode({ 1, req[2], h.mp.null, "two" })))
        local a = up.wait(function(t) return t[1] == 1 and t[2] == 50 end)
        assert.equal("two", a.msg[4])
    end)

    it("refuses forged ids, '_' names and methods outside the interface; nothing reaches the client",
    function()
        start()
        local c = assert(h.client(gateway.addr))
        local g = pass_function(c)
        up.send({ 0, 1, "$call", { yours_ext("\7"), "", {} } })           -- the client's own id
        up.send({ 0, 2, "$call", { yours_ext("\205\48\57"), "", {} } })   -- 12345
        up.send({ 0, 3, "$call", { yours_ext(g), "_secret", {} } })
        up.send({ 0, 4, "$call", { yours_ext(g), "write", {} } })
        up.send({ 0, 5, "$get", { yours_ext(g), "_x" } })
        up.send({ 0, 6, "$call", { 1, "", {} } })
        up.send({ 0, 7, "$get", { 1, 2 } })
        local want = {
            { 410, "object_gone", "no object 7 on this connection" },
            { 410, "object_gone", "no object 12345 on this connection" },
            { 403, "forbidden", "method '_secret' is private" },
            { 404, "no_such_method", "the object has no method 'write'" },
            { 403, "forbidden", "attribute '_x' is private" },
            { 400, "bad_request",
              "$call params are [target, method, ...] with a reference the gateway gave" },
            { 400, "bad_request",
              "$get params are [target, key, ...] with a reference the gateway gave" },
        }
        for i, w in ipairs(want) do
            local a = up.wait(function(t) return t[1] == 1 and t[2] == i end)
            assert.same(w, { a.msg[3].code, a.msg[3].type, a.msg[3].message })
        end
        assert.equal(0, #c.unexpected)
        assert(gateway:wait_log('callback_refused service=raw name="_secret" code=403'))
    end)

    it("drops a notification passing a function (it has no answer to tie callbacks to)", function()
        start()
        local c = assert(h.client(gateway.addr))
        assert(c:notify("raw.take", { object_ext(7, { "" }) }))
        assert(gateway:wait_log('notification_dropped service=raw method="raw.take" reason=not_supported ' ..
            'why="functions and objects cannot be passed in a notification through the gateway"'))
        pass_function(c) -- the next message the upstream gets is this call
        assert.equal("take", up.msgs[1].msg[3])
        assert.equal(0, up.msgs[1].msg[1])
    end)

    it("counts callback requests against the client's write buffer: 503 once it is full", function()
        up = raw_upstream()
        gateway = assert(h.start_gateway(([[
            return { listen = "tcp://127.0.0.1:0", drain_timeout = 2,
                     limits = { max_write_buffer = 1048576 }, services = {
                raw = { upstream = %q, objects = true, deadline = 5, connections = 1 } } }
        ]]):format(up.addr)))
        local c = assert(h.client(gateway.addr))
        local g = pass_function(c)
        c.handle:read_stop() -- a client that does not read
        local big = string.rep("x", 100000)
        for i = 1, 100 do up.send({ 0, i, "$call", { yours_ext(g), "", { big } } }) end
        local a = up.wait(function(t) return t[1] == 1 and type(t[3]) == "table" end)
        assert.same({ 503, "overloaded",
            "the client is not reading: its write buffer is full (limits.max_write_buffer)" },
            { a.msg[3].code, a.msg[3].type, a.msg[3].message })
        assert(gateway:wait_log('callback_refused service=raw name="" code=503'))
    end)

    it("records an interface of up to ghost.consts.objects.IFACE_MAX names; one more is 400, nothing sent",
    function()
        h.ghost() -- ghost's modules on the paths: ghost.consts is the C side's
        local max = require("ghost.consts").objects.IFACE_MAX
        local names = {}
        for i = 1, max do names[i] = "m" .. i end
        start()
        local c = assert(h.client(gateway.addr))
        local id = assert(c:request("raw.take", { object_ext(7, names) }))
        local m = up.wait(function(t) return t[1] == 0 and t[3] == "take" end)
        -- params [ext 16 64 [G, names]]: G is the gateway's id (uint 64 for 53 random bits, or less)
        local g = m.els[4]:match("^\145\200..\64\146(\207........)")
            or m.els[4]:match("^\145\200..\64\146(\206....)")
        assert.is_not_nil(g, h.mp.hex(m.els[4]:sub(1, 16)))
        assert.equal(h.mp.encode(names), m.els[4]:sub(7 + #g))
        up.send({ 1, m.msg[2], h.mp.null, true })
        assert.is_nil(assert(c:wait_response(id)).error)
        up.send({ 0, 1, "$call", { yours_ext(g), "m" .. max, {} } })
        assert.truthy(h.await(function() return #c.unexpected > 0 end))
        local req = h.mp.decode(c.unexpected[1])
        assert.same({ "$call", "m" .. max }, { req[3], req[4][2] })
        assert(c:send_raw(h.mp.encode({ 1, req[2], h.mp.null, "ok" })))
        assert.equal("ok", up.wait(function(t) return t[1] == 1 and t[2] == 1 end).msg[4])

        names[max + 1] = "m" .. (max + 1)
        local sent = #up.msgs
        local r = assert(c:wait_response(assert(c:request("raw.take", { object_ext(8, names) }))))
        assert.same({ 400, "bad_request", "malformed object reference in the params" },
            { r.error.code, r.error.type, r.error.message })
        assert.equal(sent, #up.msgs)
    end)

    it("releases the client's function when the upstream releases it, and fails calls after", function()
        start()
        local c = assert(h.client(gateway.addr))
        local g = pass_function(c)
        up.send({ 2, "$release", { { { h.mp.raw(g), 1 } } } })
        local rel = assert(c:wait_notification())
        assert.equal("$release", rel.method)
        assert.same({ { { 7, 1 } } }, rel.params)
        up.send({ 0, 9, "$call", { yours_ext(g), "", {} } })
        local a = up.wait(function(t) return t[1] == 1 and t[2] == 9 end)
        assert.equal(410, a.msg[3].code)
    end)
end)
