-- Config errors point at the fix: the file and line of the option, the nearest option name for
-- a typo, what to write instead. `ghostgate check` fails on everything `serve` would fail on.
local h = require "spec.support.helpers"

local function ghostgate(args)
    return assert(h.run(h.bin("ghostgate"), args, { timeout = h.timeout(10) }))
end

-- Write source as dir/gateway.lua; returns its path.
local function config(source, dir)
    local path = (dir or h.tmpdir()) .. "/gateway.lua"
    assert(h.write_file(path, source))
    return path
end

-- `check` fails with exactly this message, and `serve` does not start with it either.
local function fails(path, message)
    local r = ghostgate({ "check", "-c", path })
    assert.equal(1, r.code, r.output)
    assert.equal("ghostgate: " .. path .. message, r.stderr)
    r = ghostgate({ "serve", "-c", path })
    assert.equal(1, r.code, r.output)
    assert.matches(path .. message, r.output, 1, true)
end

describe("A config error", function()
    after_each(h.cleanup)

    it("names the file and line of any option, and the nearest option for a typo", function()
        fails(config([[
return {
    services = {
        users = {
            upstream = "tcp://127.0.0.1:7421",
            -- deadline = 5, (a comment is not the option)
            deadlin = 5,
        },
    },
}
]]), ":6: services.users: unknown option 'deadlin'; did you mean 'deadline'?")
        fails(config([[
return {
    listen = "tcp://127.0.0.1:0",
    limits = { max_clients = 10,
               idle_timeout = "long" },
}
]]), ":4: limits.idle_timeout: expected a number, got string \"long\"")
        -- no plausible option: no suggestion
        fails(config("return { services = {}, deadlin = 5 }\n"), ":1: config: unknown option 'deadlin'")
    end)

    it("tells an http:// upstream of a msgpack-rpc service to set protocol = \"jsonrpc-http\"", function()
        fails(config([[
return {
    services = {
        calc = {
            upstream = "http://127.0.0.1:8545/rpc",
        },
    },
}
]]), ':4: services.calc: upstream "http://127.0.0.1:8545/rpc" does not fit protocol msgpack-rpc: '
            .. 'for a JSON-RPC service over HTTP, set protocol = "jsonrpc-http"')
        fails(config([[
return { services = { calc = { protocol = "jsonrpc-http", upstreams = { "tcp://127.0.0.1:8545" } } } }
]]), ':1: services.calc: upstream "tcp://127.0.0.1:8545" does not fit protocol jsonrpc-http: give its '
            .. 'URL, http://host:port/path')
    end)

    it("says that policies are a list in braces when one policy is given without them", function()
        fails(config([[
return {
    services = {
        users = { upstream = "tcp://127.0.0.1:7421",
                  policies = guard { allow = { "get_*" } } },
    },
}
]]), ":4: services.users.policies: expected a list of policies, in braces: policies = { guard { ... } }")
    end)

    it("fails `check` (not only `serve`) when an adapter file does not exist", function()
        local dir = h.tmpdir()
        local path = config([[
return {
    services = {
        users = { adapter = "users_adapter.lua" },
    },
}
]], dir)
        fails(path, ":3: services.users.adapter: no adapter file " .. dir .. "/users_adapter.lua "
            .. "(relative paths start at the config file's directory)")
        assert(h.write_file(dir .. "/users_adapter.lua", "return { get = function(id) return id end }\n"))
        local r = ghostgate({ "check", "-c", path })
        assert.equal(0, r.code, r.output)
    end)

    it("shows a relative policy_path from the config's directory without ./ in the middle", function()
        local dir = h.tmpdir()
        local path = config([[
return { services = { users = { upstream = "tcp://127.0.0.1:7421", policies = { policy "nosuch" {} } } } }
]], dir)
        local r = ghostgate({ "check", "-c", path })
        assert.equal(1, r.code)
        assert.matches("user policies are found with policy_path " .. dir .. "/policies/?.lua)", r.stderr,
            1, true)
        -- a config in the working directory: ./policies, not ././policies
        r = assert(h.run(h.bin("ghostgate"), { "check", "-c", "gateway.lua" }, { cwd = dir }))
        assert.equal(1, r.code)
        assert.matches("user policies are found with policy_path ./policies/?.lua)", r.stderr, 1, true)
    end)
end)
