-- Several worker processes: `workers = N` starts a master that binds the sockets, forks N
-- workers sharing the port (SO_REUSEPORT) and restarts any worker that dies; a policy stuck in
-- Lua is caught by the watchdog, which ends that worker so the master can start a new one.
local h = require "spec.support.helpers"

local function worker_pids(gw, n)
    local pids = {}
    assert(h.await(function()
        pids = {}
        for line in gw:logs():gmatch("[^\n]+") do
            local w, pid = line:match("worker_ready worker=(%d+) .* pid=(%d+)")
            if w then pids[tonumber(w)] = tonumber(pid) end
        end
        local count = 0
        for _ in pairs(pids) do count = count + 1 end
        return count >= n
    end, h.timeout(10)), "workers did not report ready")
    return pids
end

local function count(s, pattern)
    local n = 0
    for _ in s:gmatch(pattern) do n = n + 1 end
    return n
end

describe("Worker processes", function()
    after_each(h.cleanup)

    it("serve one port from every worker: each worker answers client calls", function()
        local up = assert(h.start_upstream())
        local dir = h.tmpdir()
        -- demo.whoami is answered by the worker itself (its pid), demo.echo by the upstream
        -- through that worker's pool: a worker that never accepted a client never shows up.
        assert(h.write_file(dir .. "/whoami.lua", [[
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
local _M = { name = "whoami", priority = 10 }
function _M.new() return setmetatable({}, { __index = _M }) end
function _M:access(ctx)
    if ctx.method == "whoami" then ctx:respond(ffi.C.getpid()) end
end
return _M
]]))
        local config = string.format([[
return {
    listen = "tcp://127.0.0.1:0", workers = 2, drain_timeout = 2, policy_path = %q,
    services = { demo = { upstream = %q, connections = 2, policies = { policy "whoami" {} } } },
}
]], dir .. "/?.lua", up.addr)
        local gw = assert(h.start_gateway(config))
        assert.matches("workers=2", gw.ready_line)
        local pids = worker_pids(gw, 2)
        assert.are_not.equal(pids[0], pids[1])
        -- both workers listen on the port the master resolved from port 0
        for line in gw:logs():gmatch("worker_ready[^\n]+") do
            assert.matches("listen=tcp://127.0.0.1:" .. gw.port, line, 1, true)
        end
        -- the kernel spreads new connections over the workers: connect until both answered
        local answered, n = {}, 0
        assert(h.await(function()
            n = n + 1
            local c = assert(h.client(gw.addr))
            local pid = assert(c:call("demo.whoami", {}))
            assert.equal(n, (c:call("demo.echo", { n })))
            c:close()
            answered[pid] = true
            return answered[pids[0]] and answered[pids[1]]
        end, h.timeout(10)), "not every worker answered a client call")
        -- 2 workers x 2 pooled connections reach the upstream
        assert(h.await(function() return h.upstream_stats(up).accepted >= 4 end))
    end)

    it("restarts a worker that dies, and the others keep serving meanwhile", function()
        local up = assert(h.start_upstream())
        local gw = assert(h.start_gateway(h.demo_config(up, nil, { workers = 2 })))
        local pids = worker_pids(gw, 2)
        assert(h.spawn("kill", { "-KILL", tostring(pids[0]) })):wait_exit(h.timeout(5))
        assert(gw:wait_log("worker_died worker=0 pid=" .. pids[0] .. " signal=9", h.timeout(5)))
        for i = 1, 20 do -- every new connection is answered, by whichever worker is up
            local c = assert(h.client(gw.addr))
            assert.equal(i, (c:call("demo.echo", { i })))
            c:close()
        end
        assert(h.await(function() return count(gw:logs(), "worker_ready worker=0") == 2 end,
            h.timeout(5)), "worker 0 was not restarted")
    end)

    it("passes SIGHUP to every worker, and on SIGTERM drains them all and exits 0", function()
        local up = assert(h.start_upstream())
        local gw = assert(h.start_gateway(h.demo_config(up, nil, { workers = 2 })))
        worker_pids(gw, 2)
        local c = assert(h.client(gw.addr))
        local id = assert(c:request("demo.sleep", { 300, "late" }))
        assert(h.await_upstream_calls(up, 1))
        assert(gw:kill("sighup"))
        assert(h.await(function() return count(gw:logs(), "reloaded config=") == 2 end, h.timeout(5)))
        assert(gw:kill("sigterm"))
        local r = assert(c:wait_response(id, h.timeout(5)))
        assert.equal("late", r.result)
        assert.equal(0, gw.proc:wait_exit(h.timeout(10)))
    end)

    it("ends a worker whose policy never returns, names the policy, and serves on", function()
        local up = assert(h.start_upstream())
        local dir = h.tmpdir()
        assert(h.write_file(dir .. "/spin.lua", [[
local _M = { name = "spin", priority = 10 }
function _M.new() return setmetatable({}, { __index = _M }) end
function _M:access(ctx)
    if ctx.method == "spin" then while true do end end
end
return _M
]]))
        local config = string.format([[
return {
    listen = "tcp://127.0.0.1:0", workers = 2, watchdog = 0.5, drain_timeout = 2,
    policy_path = %q,
    services = { demo = { upstream = %q, policies = { guard {}, policy "spin" {} } } },
}
]], dir .. "/?.lua", up.addr)
        local gw = assert(h.start_gateway(config))
        worker_pids(gw, 2)
        local stuck = assert(h.client(gw.addr))
        assert(stuck:request("demo.spin", {}))
        assert(gw:wait_log("policy_stuck service=demo phase=request policy=spin", h.timeout(5)))
        assert(stuck:wait_closed(h.timeout(5)), "the stuck worker's client was not disconnected")
        assert(gw:wait_log("worker_died worker=%d pid=%d+ status=70", h.timeout(5)))
        for i = 1, 10 do
            local c = assert(h.client(gw.addr))
            assert.equal(i, (c:call("demo.echo", { i })))
            c:close()
        end
    end)
end)
