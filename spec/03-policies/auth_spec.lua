-- Authentication, end to end: a client calls ghost.auth(token) once per connection, with a
-- static API key or an HMAC token (`ghostgate token`); the auth policy then guards services by
-- identity and scope. Wrong tokens are throttled per client address.
local h = require "spec.support.helpers"
local e2e = require "spec.support.policy_e2e"
local crypto = require "spec.support.crypto"
local uv = require "luv"

local SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret"
local KEY_CI = "ci-key-0123456789abcdef"
local KEY_RO = "ro-key-0123456789abcdef"

local function setup()
    local up = assert(h.start_upstream())
    local gw = e2e.gateway(([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 1,
    auth = {
        keys = {
            [%q] = { identity = "ci", scopes = { "demo.*", "admin.*" } },
            [%q] = { identity = "ro", scopes = { "demo.echo" } },
        },
        hmac_secret = %q, max_ttl = 3600, failures = 3, failure_window = 60,
    },
    services = {
        demo = { upstream = "%%UP1%%", deadline = 2, policies = { auth {} } },
        admin = { upstream = "%%UP1%%", deadline = 2, policies = { auth { identities = { "ci" } } } },
        open = { upstream = "%%UP1%%", deadline = 2 },
    },
}]]):format(KEY_CI, KEY_RO, SECRET), { up = { up } })
    return up, gw
end

-- One call from a connection bound to local address `from` (127.0.0.2: another client address).
-- Returns the response {1, msgid, error, result}.
local function call_from(from, gw, method, params)
    local tcp = uv.new_tcp()
    assert(tcp:bind(from, 0))
    local buf, response = "", nil
    tcp:connect(gw.host, gw.port, function(err)
        assert(not err, err)
        tcp:write(h.mp.encode({ 0, 1, method, params }))
        tcp:read_start(function(_, data)
            if not data then return end
            buf = buf .. data
            local stop = h.mp.frame(buf, 1)
            if stop then response = h.mp.decode(buf:sub(1, stop - 1)) end
        end)
    end)
    assert(h.await(function() return response end))
    tcp:close()
    return response
end

describe("auth (end to end)", function()
    after_each(h.cleanup)

    it("answers sys.describe only to an authenticated connection when auth is configured", function()
        local _, gw = setup()
        local c = assert(h.client(gw.addr))
        local _, err = c:call("sys.describe", {})
        assert(h.is_error(err, 401, "unauthenticated"))
        assert(c:call("ghost.auth", { KEY_CI }))
        local described = assert(c:call("sys.describe", {}))
        assert.is_table(described.demo)
    end)

    it("refuses calls to a protected service before ghost.auth with 401 unauthenticated", function()
        local up, gw = setup()
        local c = assert(h.client(gw.addr))
        local _, err = c:call("demo.echo", { 1 })
        assert(h.is_error(err, 401, "unauthenticated"))
        assert.equal("service 'demo' requires authentication: call ghost.auth(token) first", err.message)
        assert.equal("open", c:call("open.echo", { "open" }))
        assert.equal(1, e2e.seen(up))
    end)

    it("authenticates a static API key once per connection; scopes and identities decide", function()
        local _, gw = setup()
        local ci, ro = assert(h.client(gw.addr)), assert(h.client(gw.addr))
        assert.same({ identity = "ci" }, ci:call("ghost.auth", { KEY_CI }))
        assert.same({ identity = "ro" }, ro:call("ghost.auth", { KEY_RO }))
        assert.equal(5, ci:call("demo.add", { 2, 3 }))
        assert.equal("x", ci:call("admin.echo", { "x" }))
        assert.equal("y", ro:call("demo.echo", { "y" }))
        local _, err = ro:call("demo.add", { 2, 3 })
        assert(h.is_error(err, 403, "forbidden"))
        assert.equal("identity 'ro' has no scope for 'demo.add'", err.message)
        _, err = ro:call("admin.echo", { 1 })
        assert(h.is_error(err, 403, "forbidden"))
        -- the identity belongs to the connection
        local anon = assert(h.client(gw.addr))
        _, err = anon:call("demo.echo", { 1 })
        assert(h.is_error(err, 401, "unauthenticated"))
    end)

    it("authenticates an HMAC token made by `ghostgate token`, with its scopes", function()
        local _, gw = setup()
        local r = assert(h.run(h.bin("ghostgate"), { "token", "-c", gw.config_path, "-i", "alice", "-t", "60",
                                                     "-s", "demo.echo,demo.add" }))
        assert.equal(0, r.code, r.output)
        local token = r.stdout:match("^(%S+)")
        assert.matches("^gg1:alice:%d+:demo%.echo,demo%.add:%x+$", token)
        local c = assert(h.client(gw.addr))
        assert.same({ identity = "alice" }, c:call("ghost.auth", { token }))
        assert.equal(3, c:call("demo.add", { 1, 2 }))
        local _, err = c:call("demo.sleep", { 1, 1 })
        assert(h.is_error(err, 403, "forbidden"))
    end)

    it("refuses expired, forged and too long-lived tokens with 401", function()
        local _, gw = setup()
        local now = os.time()
        local cases = {
            { crypto.token(SECRET, "alice", now - 5, "demo.*"), "token expired" },
            { crypto.token(SECRET, "alice", now + 7200, "demo.*"), "token lifetime exceeds max_ttl" },
            { crypto.token(SECRET, "alice", now + 60, "demo.*"):gsub("alice", "admin", 1), "invalid token" },
        }
        for _, case in ipairs(cases) do
            local c = assert(h.client(gw.addr))
            local _, err = c:call("ghost.auth", { case[1] })
            assert(h.is_error(err, 401, "unauthenticated"))
            assert.equal(case[2], err.message)
        end
    end)

    it("stops a connection's calls when its token expires", function()
        local _, gw = setup()
        local c = assert(h.client(gw.addr))
        -- expiry is a whole second of the wall clock: the token gets 2 to 3 s of life, so that
        -- a loaded machine has time to present it before it runs out (with +1 it could be
        -- minted in the last moment of its only second)
        local token = crypto.token(SECRET, "alice", math.floor(os.time()) + 3, "demo.*")
        assert.same({ identity = "alice" }, c:call("ghost.auth", { token }))
        local err = h.retry(function()
            local _, e = c:call("demo.echo", { 1 })
            return e
        end, h.timeout(3) + 3, 0.05)
        assert(h.is_error(err, 401, "unauthenticated"))
        assert.equal("token expired: call ghost.auth(token) again", err.message)
        local _, again = c:call("demo.echo", { 1 })
        assert(h.is_error(again, 401, "unauthenticated"))
    end)

    it("throttles wrong tokens per client address, then refuses even a right one with 429", function()
        local _, gw = setup()
        local c = assert(h.client(gw.addr))
        for _ = 1, 3 do
            local _, err = c:call("ghost.auth", { "wrong-token" })
            assert(h.is_error(err, 401, "unauthenticated"))
            assert.equal("invalid token", err.message)
        end
        local fresh = assert(h.client(gw.addr)) -- same address, new connection
        local _, err = fresh:call("ghost.auth", { KEY_CI })
        assert(h.is_error(err, 429, "rate_limited"))
        assert.matches("^too many failed authentications, retry after", err.message)
        assert.is_true(err.retry_after > 59 and err.retry_after <= 60, tostring(err.retry_after))
        assert.equal(1, #e2e.lines(gw, "auth_failed .*too many failed"))
        -- another address is not throttled
        local r = call_from("127.0.0.2", gw, "ghost.auth", { KEY_CI })
        assert.is_nil(r[3])
        assert.same({ identity = "ci" }, r[4])
    end)

    it("is used by `ghostgate call -T TOKEN` (and GHOSTGATE_TOKEN)", function()
        local _, gw = setup()
        local function call(args, env)
            return assert(h.run(h.bin("ghostgate"), args, { env = env, timeout = h.timeout(10) }))
        end
        local r = call({ "call", "-a", gw.addr, "-T", KEY_CI, "demo.echo", '"hi"' })
        assert.equal(0, r.code, r.output)
        assert.equal('"hi"', r.stdout)
        r = call({ "call", "-a", gw.addr, "demo.add", "1", "2" }, { GHOSTGATE_TOKEN = KEY_CI })
        assert.equal(0, r.code, r.output)
        assert.equal("3", r.stdout)
        r = call({ "call", "-a", gw.addr, "demo.echo", '"hi"' }, { GHOSTGATE_TOKEN = false })
        assert.equal(1, r.code, r.output)
        assert.matches("error 401 unauthenticated", r.stderr, 1, true)
        r = call({ "call", "-a", gw.addr, "-T", "not-a-valid-token", "demo.echo", '"hi"' })
        assert.equal(1, r.code, r.output)
        assert.matches("error 401 unauthenticated: invalid token", r.stderr, 1, true)
    end)

    it("answers ghost.auth with 501 not_supported on a gateway without an auth section", function()
        local up = assert(h.start_upstream())
        local gw = assert(h.start_gateway(h.demo_config(up)))
        local c = assert(h.client(gw.addr))
        local _, err = c:call("ghost.auth", { KEY_CI })
        assert(h.is_error(err, 501, "not_supported"))
    end)
end)
