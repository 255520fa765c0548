-- Call ids never reach the wrong call. The msgid the gateway sends upstream names a record of
-- its call pool; once a call has ended (its deadline passed) an answer to it may still come, as
-- late as the upstream likes. Until it does (or the connection closes) that msgid is not given
-- to another call, so the late answer is dropped and every other call gets its own answer.
--
-- The upstream here runs in the test process: it answers every call at once, except `hold`,
-- whose answer it keeps back until told (or until a request arrives with the held msgid, which
-- is the moment a late answer would do harm).
local h = require "spec.support.helpers"
local mp = h.mp
local uv = require "luv"

-- A MessagePack-RPC upstream on 127.0.0.1. Methods: echo(x) -> x; hold() -> "held", answered
-- only by release() (or just before the echo number release_at_echo is answered). Fields:
-- addr, held (msgid kept back), reused (requests that came with the held msgid while it was
-- outstanding), requests, echoes.
local function start_holding_upstream()
    local server = uv.new_tcp()
    assert(server:bind("127.0.0.1", 0))
    local up = { requests = 0, reused = 0, conns = {} }
    up.addr = "tcp://127.0.0.1:" .. server:getsockname().port
    local function answer(sock, msgid, result)
        sock:write(mp.encode({ 1, msgid, mp.null, result }))
    end
    function up.release()
        if up.held then
            answer(up.held_sock, up.held, "held")
            up.held, up.released = nil, true
        end
    end
    assert(server:listen(128, function()
        local sock = uv.new_tcp()
        server:accept(sock)
        up.conns[#up.conns + 1] = sock
        local buf = ""
        sock:read_start(function(_, data)
            if not data then
                if not sock:is_closing() then
                    sock:close()
                end
                return
            end
            buf = buf .. data
            local pos = 1
            while true do
                local stop = mp.frame(buf, pos)
                if not stop then
                    break
                end
                local m = assert(mp.decode(buf:sub(pos, stop - 1)))
                pos = stop
                local msgid, method, params = m[2], m[3], m[4]
                up.requests = up.requests + 1
                if up.held and msgid == up.held then
                    -- the held msgid was given to another call: the late answer lands now
                    up.reused = up.reused + 1
                    up.release()
                end
                if method == "hold" then
                    up.held, up.held_sock = msgid, sock
                else
                    up.echoes = (up.echoes or 0) + 1
                    if up.echoes == up.release_at_echo then
                        up.release()
                    end
                    answer(sock, msgid, params[1])
                end
            end
            buf = buf:sub(pos)
        end)
    end))
    up.server = server
    function up.close()
        for _, s in ipairs(up.conns) do
            if not s:is_closing() then
                s:close()
            end
        end
        server:close()
    end
    return up
end

describe("Call ids", function()
    local up
    after_each(function()
        if up then
            up.close()
            up = nil
        end
        h.cleanup()
    end)

    it("an answer held back at the upstream past its call's deadline, released after 100,000 other "
        .. "calls on the same connection, is dropped; every other call gets its own answer", function()
        up = start_holding_upstream()
        local gw = assert(h.start_gateway({
            services = { demo = { upstreams = { up.addr }, connections = 1, deadline = 1 } },
        }))
        local c = assert(h.client(gw.addr))
        local held = assert(c:request("demo.hold", {}))
        local r = assert(c:wait_response(held, h.timeout(5)))
        assert(h.is_error(r.error, 504, "deadline_exceeded"))
        assert.is_number(up.held)

        -- One call at a time for the first 5,000 (each takes the record the one before gave
        -- back: had the held call's record been given back, its msgid would come round again
        -- by the 4,096th), then 8 at a time.
        local n, sent, done = 100000, 0, 0
        local wrong = {}
        local function refill()
            local depth = done < 5000 and 1 or 8
            while sent - done < depth and sent < n do
                sent = sent + 1
                assert(c:request("demo.echo", { sent }))
            end
        end
        refill()
        local next_id = held + 1
        assert(h.await(function()
            while c.responses[next_id] do
                local resp = c.responses[next_id]
                local want = next_id - held
                if resp.result ~= want then
                    wrong[#wrong + 1] = string.format("call %d got %s", want, tostring(resp.result))
                end
                c.responses[next_id] = nil
                next_id = next_id + 1
                done = done + 1
                refill()
            end
            return done == n or c.closed
        end, h.timeout(120)))
        assert.equal(n, done)
        assert.same({}, wrong)
        assert.equal(0, up.reused, "the held msgid was given to another call while outstanding")
        assert.is_number(up.held, "the held answer was released before the end")

        -- released now: the gateway drops it; nothing more reaches the client
        up.release()
        assert.equal("after", c:call("demo.echo", { "after" }))
        assert.same({}, c.duplicates)
        assert.same({}, c.unexpected)
        assert.is_false(c.closed)
    end)

    it("an adapter task that returns after its call's deadline, while 5,000 other calls to the "
        .. "adapter come and go, has its return dropped; every other call gets its own answer", function()
        up = start_holding_upstream()
        local dir = h.tmpdir()
        local adapter = assert(h.write_file(dir .. "/late_adapter.lua", table.concat({
            "local m = {}",
            "function m.wait() return upstream.call('held', 'hold') end",
            "function m.echo(x) return upstream.call('held', 'echo', x) end",
            "return m",
        }, "\n")))
        local gw = assert(h.start_gateway({
            services = {
                held = { upstreams = { up.addr }, connections = 1, deadline = 60 },
                late = { adapter = adapter, deadline = 0.5 },
            },
        }))
        local c = assert(h.client(gw.addr))
        local waiting = assert(c:request("late.wait", {}))
        local r = assert(c:wait_response(waiting, h.timeout(5)))
        assert(h.is_error(r.error, 504, "deadline_exceeded"))
        -- One call at a time: each would take the record the one before gave back. The task's
        -- answer is released just before the 4,096th echo is answered: had the waiting call's
        -- record been given back at its deadline, that call would now have its msgid.
        up.release_at_echo = 4096
        local wrong = {}
        for i = 1, 5000 do
            local got = c:call("late.echo", { i }, h.timeout(5))
            if got ~= i then
                wrong[#wrong + 1] = string.format("call %d got %s", i, tostring(got))
            end
        end
        assert.is_true(up.released, "the held answer was not released")
        assert.same({}, wrong)
        assert.same({}, c.duplicates)
        assert.same({}, c.unexpected)
    end)

    it("an upstream connection that owes more than max_calls / 16 answers (at least 16) is closed and "
        .. "reconnected, and the ids it held are free again", function()
        local d = h.setup_demo({ service = { deadline = 0.3 }, config = { limits = { max_calls = 64 } } })
        assert.equal("warm", d.c:call("demo.echo", { "warm" }))
        local ids = {}
        for i = 1, 20 do
            ids[i] = assert(d.c:request("demo.hang", {}))
        end
        for _, r in ipairs(assert(d.c:wait_all(ids, h.timeout(5)))) do
            assert(h.is_error(r.error, 504, "deadline_exceeded"))
        end
        local line = assert(d.gw:wait_log('upstream_recycled service=demo upstream='
            .. d.up.addr:gsub("%p", "%%%0") .. ' reason="answers owed" owed=%d+', h.timeout(5)))
        assert.is_true(tonumber(line:match("owed=(%d+)")) > 16)
        -- all 64 call slots are usable again: 60 calls at once are answered, none overloaded
        ids = {}
        for i = 1, 60 do
            ids[i] = assert(d.c:request("demo.echo", { i }))
        end
        for i, r in ipairs(assert(d.c:wait_all(ids, h.timeout(5)))) do
            assert.is_nil(r.error)
            assert.equal(i, r.result)
        end
    end)
end)
