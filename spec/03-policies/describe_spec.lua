-- sys.describe shows a caller what it may call: the services and declared methods whose decide
-- phases (guard, auth, your own) let the caller's identity and scopes through. The answer is
-- computed once per config generation and identity; a reload computes it again.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"
local kit = require "spec.support.policy_kit"
local describe_mod = require "ghost.describe"

local KEY_CI = "ci-key-0123456789abcdef"
local KEY_RO = "ro-key-0123456789abcdef"

local CONFIG = [[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    auth = {
        keys = {
            [%q] = { identity = "ci", scopes = { "demo.*", "admin.*" } },
            [%q] = { identity = "ro", scopes = { "demo.echo" } },
        },
    },
    services = {
        demo = { upstream = "%%UP1%%", policies = { auth {} },
                 methods = { echo = { "any" }, add = { "number", "number" } } },
        admin = { upstream = "%%UP1%%", policies = { auth { identities = { "ci" } } },
                  methods = { stats = {} } },
        hidden = { upstream = "%%UP1%%", policies = { auth {} } },
        open = { upstream = "%%UP1%%", methods = { echo = { "any" } },
                 policies = { guard { deny = { "internal" } } } },
    },
}]]

local function names(t)
    local out = {}
    for k in pairs(t or {}) do out[#out + 1] = k end
    table.sort(out)
    return out
end

local function describe_as(gw, key)
    local c = assert(h.client(gw.addr))
    assert(c:call("ghost.auth", { key }))
    return assert(c:call("sys.describe", {}))
end

describe("sys.describe", function()
    after_each(h.cleanup)

    it("lists only the services and methods the caller's identity and scopes may call", function()
        local up = assert(h.start_upstream())
        local gw = e2e.gateway(CONFIG:format(KEY_CI, KEY_RO), { up = { up } })
        local ci = describe_as(gw, KEY_CI)
        assert.same({ "admin", "demo", "open" }, names(ci))
        assert.same({ "add", "echo" }, names(ci.demo.methods))
        assert.same({ "stats" }, names(ci.admin.methods))
        assert.same({ args = { "number", "number" } }, ci.demo.methods.add)
        assert.equal(1, ci.demo.upstreams)
        -- ro: one scope, demo.echo; admin is for ci only; `hidden` declares no methods and
        -- no scope of ro reaches it
        local ro = describe_as(gw, KEY_RO)
        assert.same({ "demo", "open" }, names(ro))
        assert.same({ "echo" }, names(ro.demo.methods))
        -- what it lists, it may call
        local c = assert(h.client(gw.addr))
        assert(c:call("ghost.auth", { KEY_RO }))
        assert.equal("x", c:call("demo.echo", { "x" }))
        local _, err = c:call("demo.add", { 1, 2 })
        assert(h.is_error(err, 403, "forbidden"))
    end)

    it("lists what a gateway without auth lets anyone call", function()
        local up = assert(h.start_upstream())
        local gw = e2e.gateway([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    services = {
        locked = { upstream = "%UP1%", policies = { auth {} }, methods = { echo = { "any" } } },
        open = { upstream = "%UP1%", methods = { echo = { "any" }, internal = {} },
                 policies = { guard { deny = { "internal" } } } },
    },
}]], { up = { up } })
        local c = assert(h.client(gw.addr))
        local d = assert(c:call("sys.describe", {}))
        assert.same({ "open" }, names(d))
        assert.same({ "echo" }, names(d.open.methods))
    end)

    it("is computed again after a reload, not before", function()
        local up = assert(h.start_upstream())
        local gw = assert(h.start_gateway(h.demo_config(up, { methods = { echo = { "any" } } })))
        local c = assert(h.client(gw.addr))
        assert.same({ "echo" }, names(assert(c:call("sys.describe", {})).demo.methods))
        assert(h.write_file(gw.config_path, "return " .. h.serialize(h.demo_config(up, {
            methods = { echo = { "any" }, add = { "number", "number" } } }, { listen = gw.addr })) .. "\n"))
        gw.proc:kill("sighup")
        assert(gw:wait_log("reloaded", h.timeout(5)))
        assert.same({ "add", "echo" }, names(assert(c:call("sys.describe", {})).demo.methods))
    end)
end)

describe("ghost.describe.for_client", function()
    it("answers each identity from its cache until the generation changes", function()
        local svc = kit.service({ methods = { echo = { "any" }, add = {} },
            policies = { { name = "guard", allow = { "echo" } } } })
        local built = { services = { demo = svc.p } }
        local client = kit.client({ identity_key = "k:one" })
        local first = describe_mod.for_client(svc.cfg, built, client)
        assert.same({ "echo" }, names(first.demo.methods))
        assert.equal(first, describe_mod.for_client(svc.cfg, built, client))
        -- another identity gets its own answer; a new generation (built) starts afresh
        local other = kit.client({ identity_key = "k:two" })
        assert.are_not.equal(first, describe_mod.for_client(svc.cfg, built, other))
        local again = describe_mod.for_client(svc.cfg, { services = built.services }, client)
        assert.are_not.equal(first, again)
        assert.same(first, again)
    end)
end)
