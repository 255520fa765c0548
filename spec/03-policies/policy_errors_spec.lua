-- When a policy goes wrong. At run time: a Lua error inside a policy answers that call with 500
-- internal carrying an id; the gateway log has the same id with the Lua traceback, and the
-- gateway keeps serving. At load time: a bad option, an unknown policy or a broken policy file
-- makes `ghostgate check` and startup fail, naming the file, the line and the reason.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"

local EXPLODE = [[
-- a user policy that fails on command
return {
    name = "explode",
    new = function() return {} end,
    decide = function(_, method)
        if method == "boom_decide" then error("decide exploded") end
    end,
    access = function(_, ctx)
        if ctx.method == "boom" then
            local t = nil
            return t.field
        end
        if ctx.method == "bad_code" then ctx:reject("no_such_code", "typo") end
        if ctx.method == "bad_number" then ctx:reject(418, "teapot") end
    end,
    response = function(_, ctx)
        if ctx.method == "boom_after" then error({ "not a string" }) end
    end,
}
]]

local function policies_dir()
    local dir = h.tmpdir()
    assert(h.write_file(dir .. "/explode.lua", EXPLODE))
    return dir
end

local function ghostgate(args)
    return assert(h.run(h.bin("ghostgate"), args, { timeout = h.timeout(10) }))
end

describe("A policy error at run time", function()
    after_each(h.cleanup)

    local function setup()
        local up = assert(h.start_upstream())
        local gw = e2e.gateway(([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1, policy_path = "%s/?.lua",
    services = { demo = { upstream = "%%UP1%%", deadline = 2, policies = { policy "explode" {} } } },
}]]):format(policies_dir()), { up = { up } })
        return up, gw, assert(h.client(gw.addr))
    end

    -- The id in a 500 internal error's message, and the log line that has it.
    local function logged(gw, err)
        assert(h.is_error(err, 500, "internal"))
        local id = err.message:match("^policy error %(id (%x+); see the gateway log%)$")
        assert.is_string(id, err.message)
        return id, assert(gw:wait_log("policy_error id=" .. id))
    end

    it("answers the call with 500 internal and an id found in the log line with the traceback", function()
        local up, gw, c = setup()
        local _, err = c:call("demo.boom", {})
        local _, line = logged(gw, err)
        assert.matches("service=demo phase=request", line, 1, true)
        assert.matches("explode.lua:11: attempt to index local 't' (a nil value)", line, 1, true)
        -- the traceback, on one line (| separates its lines), down to the runtime that called it
        assert.matches("|stack traceback:|", line, 1, true)
        assert.matches("explode.lua:11: in function", line, 1, true)
        assert.matches("ghost/policy.lua:%d+: in function", line)
        assert.equal(0, e2e.seen(up))
    end)

    it("raises at the policy's line for ctx:reject with an unknown code: 500 internal with an id", function()
        local up, gw, c = setup()
        local _, err = c:call("demo.bad_code", {})
        local _, line = logged(gw, err)
        assert.matches("service=demo phase=request", line, 1, true)
        assert.matches("explode.lua:13: ctx:reject: unknown error code no_such_code", line, 1, true)
        _, err = c:call("demo.bad_number", {})
        _, line = logged(gw, err)
        assert.matches("explode.lua:14: ctx:reject: unknown error code 418", line, 1, true)
        assert.equal(0, e2e.seen(up))
        assert.equal("ok", c:call("demo.echo", { "ok" }))
    end)

    it("keeps serving: the same connection, other connections, and each error gets its own id", function()
        local _, gw, c = setup()
        local _, e1 = c:call("demo.boom", {})
        assert.equal("ok", c:call("demo.echo", { "ok" }))
        local other = assert(h.client(gw.addr))
        local _, e2 = other:call("demo.boom", {})
        assert.equal(2, other:call("demo.echo", { 2 }))
        local id1, id2 = logged(gw, e1), logged(gw, e2)
        assert.are_not.equal(id1, id2)
        assert.is_false(c.closed)
        assert.is_false(other.closed)
    end)

    it("reports errors in decide (request phase) and in the response phase the same way", function()
        local up, gw, c = setup()
        local _, err = c:call("demo.boom_decide", {})
        local _, line = logged(gw, err)
        assert.matches("phase=request", line, 1, true)
        assert.matches("explode.lua:6: decide exploded", line, 1, true)
        assert.equal(0, e2e.seen(up))
        -- the upstream answered; the response phase failed: the answer is replaced
        _, err = c:call("demo.boom_after", {})
        _, line = logged(gw, err)
        assert.matches("phase=response", line, 1, true)
        assert.matches("(error object is not a string: a table value)", line, 1, true)
        assert.equal(1, e2e.seen(up))
        assert.equal(3, c:call("demo.add", { 1, 2 }))
    end)
end)

describe("A policy error at load time", function()
    after_each(h.cleanup)

    -- Write a config whose line 4 holds the policies; returns its path.
    local function config(policies, dir)
        dir = dir or policies_dir()
        local path = dir .. "/config.lua"
        assert(h.write_file(path, ([[
return {
    policy_path = "%s/?.lua",
    services = { demo = { upstream = "tcp://127.0.0.1:7421",
        policies = { %s } } },
}
]]):format(dir, policies)))
        return path
    end

    local function fails(path, reason)
        local r = ghostgate({ "check", "-c", path })
        assert.equal(1, r.code, r.output)
        assert.equal("ghostgate: " .. path .. ":4: " .. reason, r.stderr)
        -- and the gateway does not start with it
        r = ghostgate({ "serve", "-c", path })
        assert.equal(1, r.code, r.output)
        assert.matches(path .. ":4: " .. reason, r.output, 1, true)
    end

    it("fails `ghostgate check` and startup on an unknown option, naming file, line and option", function()
        fails(config([[guard { allow = { "echo" } }, breaker { failurs = 3 }]]),
            "breaker: unknown option 'failurs'; did you mean 'failures'?")
    end)

    it("fails on an option of the wrong type", function()
        fails(config([[breaker { failures = "3" }]]), 'breaker.failures: expected an integer, got string "3"')
    end)

    it("fails on a bad option of a user policy, validated by the policy's own schema", function()
        local dir = h.tmpdir()
        assert(h.write_file(dir .. "/quota.lua", [[
return { name = "quota", schema = { type = "record", fields = { limit = { type = "integer", min = 1 } } },
         new = function(conf) return { conf = conf } end, access = function() end }
]]))
        fails(config([[policy "quota" { limit = 0 }]], dir), "quota.limit: must be at least 1")
        fails(config([[policy "quota" { limt = 5 }]], dir),
            "quota: unknown option 'limt'; did you mean 'limit'?")
        assert.equal(0, ghostgate({ "check", "-c", config([[policy "quota" { limit = 5 }]], dir) }).code)
    end)

    it("fails on an unknown policy, saying where user policies are looked for", function()
        local path = config([[policy "nosuch" {}]])
        local r = ghostgate({ "check", "-c", path })
        assert.equal(1, r.code)
        assert.matches(path .. ":4: no policy named 'nosuch'", r.stderr, 1, true)
    end)

    it("fails on a user policy file that does not compile, naming that file and line", function()
        local dir = h.tmpdir()
        assert(h.write_file(dir .. "/broken.lua", "return {\n  name = 'broken',,\n}\n"))
        local path = config([[policy "broken" {}]], dir)
        local r = ghostgate({ "check", "-c", path })
        assert.equal(1, r.code)
        assert.matches(path .. ":4: " .. dir .. "/broken.lua:2:", r.stderr, 1, true)
    end)

    it("finds user policies relative to the config file's directory by default", function()
        local dir = h.tmpdir()
        assert(os.execute("mkdir " .. dir .. "/policies") == 0)
        assert(h.write_file(dir .. "/policies/explode.lua", EXPLODE))
        local path = dir .. "/config.lua"
        assert(h.write_file(path, [[
return { services = { demo = { upstream = "tcp://127.0.0.1:7421", policies = { policy "explode" {} } } } }
]]))
        local r = ghostgate({ "check", "-c", path })
        assert.equal(0, r.code, r.output)
    end)
end)
