-- The Redis registry (docs/scale-out.md): `ghostgate register` keeps an endpoint of a service in
-- Redis with a TTL and a heartbeat, deregisters at once on SIGTERM, and comes back after Redis
-- restarts. Real redis-server processes on free loopback ports.
local h = require "spec.support.helpers"

local function register(redis, args)
    local argv = { "register", "-r", redis.url }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    return assert(h.spawn(h.bin("ghostgate"), argv, { name = "ghostgate-register" }))
end

local KEY = "ghostgate:{calc}:ep:tcp://127.0.0.1:9000"
local SET = "ghostgate:{calc}:eps"

describe("ghostgate register", function()
    after_each(h.cleanup)

    it("registers at once with the documented keys, heartbeats, and deregisters on SIGTERM", function()
        local redis = assert(h.start_redis())
        local sub = assert(h.spawn("redis-cli", { "-p", tostring(redis.port), "--raw", "SUBSCRIBE",
            "ghostgate:registry" }, { name = "redis-cli" }))
        assert(sub:wait_line("^ghostgate:registry$"))
        local p = register(redis, { "-s", "calc", "-a", "tcp://127.0.0.1:9000", "--ttl", "1" })
        assert(p:wait_line("registered service=calc addr=tcp://127.0.0.1:9000 ttl_ms=1000"))
        assert.matches("^ghostgate%-register host=%S+ pid=" .. p.pid .. "$", redis:cmd("GET", KEY))
        assert.equal("tcp://127.0.0.1:9000", redis:cmd("SMEMBERS", SET))
        local _, first = sub:wait_line("^calc$") -- the join hint
        -- The heartbeat (every ttl/3) pushes the expiry back before it lapses.
        local low = tonumber(redis:cmd("PTTL", KEY))
        assert.is_true(low > 0 and low <= 1000)
        assert.is_true(h.await(function()
            local now = tonumber(redis:cmd("PTTL", KEY))
            low = math.min(low, now)
            return now > low + 50
        end, h.timeout(2)))

        assert(p:kill("sigterm"))
        assert.equal(0, p:wait_exit())
        assert.matches("deregistered service=calc addr=tcp://127.0.0.1:9000", p:output())
        assert.equal("0", redis:cmd("EXISTS", KEY)) -- at once, not after the TTL
        assert.equal("0", redis:cmd("SCARD", SET))
        assert(sub:wait_line("^calc$", nil, first + 1)) -- the leave hint
    end)

    it("an endpoint whose registrant dies lapses after its TTL", function()
        local redis = assert(h.start_redis())
        local p = register(redis, { "-s", "calc", "-a", "tcp://127.0.0.1:9000", "--ttl", "0.6" })
        assert(p:wait_line("registered service=calc"))
        assert(p:kill("sigkill"))
        p:wait_exit()
        assert.equal("1", redis:cmd("EXISTS", KEY))
        local t0 = h.now()
        assert.is_true(h.await(function()
            return redis:cmd("EXISTS", KEY) == "0"
        end, h.timeout(3)))
        assert.is_true(h.now() - t0 <= 0.6 + 0.5)
    end)

    it("keeps retrying while Redis is down and registers again when it is back", function()
        local redis = assert(h.start_redis())
        local p = register(redis, { "-s", "calc", "-a", "tcp://127.0.0.1:9000", "--ttl", "1" })
        assert(p:wait_line("registered service=calc"))
        assert(redis:kill())
        local _, down = p:wait_line("redis_down name=registry url=\"redis://127.0.0.1:" .. redis.port .. "\"")
        redis = assert(h.start_redis({ port = redis.port }))
        assert(p:wait_line("registered service=calc", h.timeout(10), down))
        assert.equal("1", redis:cmd("EXISTS", KEY))
        assert.equal("tcp://127.0.0.1:9000", redis:cmd("SMEMBERS", SET))
        assert(p:kill("sigterm"))
        assert.equal(0, p:wait_exit())
        assert.equal("0", redis:cmd("EXISTS", KEY))
    end)

    it("refuses a bad command line with what is wrong, then the usage: exit 64", function()
        local cases = {
            { { "-s", "calc", "-a", "tcp://127.0.0.1:9000" }, "%-r URL is required" },
            { { "-r", "http://x", "-s", "calc", "-a", "tcp://127.0.0.1:9000" },
                "redis: expected redis://%[%[USER%]:PASSWORD@%]HOST%[:PORT%]%[/DB%] or unix:PATH" },
            { { "-r", "redis://127.0.0.1", "-s", "{calc}", "-a", "tcp://127.0.0.1:9000" },
                "bad service name: 1 to 64 letters, digits, '_', '%.' or '%-' '{calc}'" },
            { { "-r", "redis://127.0.0.1", "-s", "calc", "-a", "tcp://127.0.0.1:9000", "--ttl", "0.1" },
                "%-%-ttl must be a number of seconds from 0%.3 to 86400, got '0%.1'" },
            { { "-r", "redis://127.0.0.1", "-s", "calc", "-a", "tcp://nope" },
                "address 'tcp://nope' is not tcp://host:port or unix:/path" },
        }
        for _, c in ipairs(cases) do
            local args = { "register" }
            for _, a in ipairs(c[1]) do
                args[#args + 1] = a
            end
            local r = assert(h.run(h.bin("ghostgate"), args))
            assert.equal(64, r.code, r.output)
            assert.equal("", r.stdout)
            assert.matches("^ghostgate register: " .. c[2], r.stderr)
            assert.matches("\nusage: ghostgate register", r.stderr)
        end
    end)
end)

describe("ghost.serve with register", function()
    after_each(h.cleanup)

    local BACKEND = [[
local ghost = require "ghost"
local ok, err = ghost.serve({ add = function(a, b) return a + b end }, "tcp://127.0.0.1:0",
    { register = { redis = arg[1], service = "calc", ttl = tonumber(arg[2]) } })
io.stderr:write("serve returned ", tostring(ok), " ", tostring(err), "\n")
]]

    for _, runner in ipairs({ "ghostgate run", "luajit" }) do
        it("registers the bound address, heartbeats, deregisters on SIGTERM (" .. runner .. ")", function()
            local redis = assert(h.start_redis())
            local b = assert(h.start_backend(BACKEND, { redis.url, "0.6" }, { luajit = runner == "luajit" }))
            local key = "ghostgate:{calc}:ep:" .. b.addr
            assert.is_true(h.await(function()
                return redis:cmd("EXISTS", key) == "1"
            end, h.timeout(2)))
            assert.matches("^ghost%.serve host=%S+ pid=" .. b.pid .. "$", redis:cmd("GET", key))
            assert.equal(b.addr, redis:cmd("SMEMBERS", "ghostgate:{calc}:eps"))
            -- still there after several TTLs: the heartbeat keeps it
            local low = tonumber(redis:cmd("PTTL", key))
            assert.is_true(h.await(function()
                local now = tonumber(redis:cmd("PTTL", key))
                low = math.min(low, now)
                return now > low + 50
            end, h.timeout(2)))

            assert(b:kill("sigterm"))
            assert.equal(0, b.proc:wait_exit())
            assert(b.proc:wait_line("serve returned true nil"))
            assert.equal("0", redis:cmd("EXISTS", key)) -- at once, not after the TTL
            assert.equal("0", redis:cmd("SCARD", "ghostgate:{calc}:eps"))
        end)
    end

    it("refuses a bad register option as a programmer error, naming it", function()
        local cases = {
            { "{ redis = 'http://x', service = 'calc' }",
                "ghost.serve: register: redis: expected redis://" },
            { "{ redis = 'redis://127.0.0.1', service = '{calc}' }",
                "ghost.serve: register: bad service name: 1 to 64 letters, digits, '_', '.' or '-'" },
            { "{ redis = 'redis://127.0.0.1', service = 'calc', ttl = 0.1 }",
                "ghost.serve: register: ttl must be a number of seconds from 0.3 to 86400" },
            { "{ redis = 'redis://127.0.0.1', service = 'calc', tll = 3 }",
                "ghost.serve: register: unknown option 'tll'" },
            { "{ service = 'calc' }", "ghost.serve: register.redis must be a URL string" },
        }
        for _, c in ipairs(cases) do
            local r = assert(h.run_lua(string.format([[
local ghost = require "ghost"
local ok, err = pcall(ghost.serve, { f = function() end }, "tcp://127.0.0.1:0", { register = %s })
print(err)
]], c[1])))
            assert.equal(0, r.code, r.output)
            assert.equal(1, r.stdout:find(c[2], 1, true), r.stdout)
        end
        local r = assert(h.run_lua([[
local ghost = require "ghost"
local ok, err = pcall(ghost.serve, { f = function() end }, "tcp://0.0.0.0:0",
    { register = { redis = "redis://127.0.0.1", service = "calc" } })
print(err)
]]))
        assert.matches("ghost.serve: register.addr is required when listening on every interface " ..
            "(tcp://0.0.0.0:", r.stdout, 1, true)
    end)
end)
