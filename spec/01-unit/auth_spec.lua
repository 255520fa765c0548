-- Authentication in plain LuaJIT: ghost.auth (lua/ghost/auth.lua: static API keys and HMAC
-- tokens, what `ghost.auth(token)` runs) and the auth policy (policies/auth.lua: which
-- identities and scopes may call a service). The fake core has real SHA-256 and HMAC.
local kit = require "spec.support.policy_kit"
local auth = require "ghost.auth"
local schema = require "ghost.schema"
local crypto = kit.crypto

local SECRET = "0123456789abcdef0123456789abcdef"
local KEY = "k-ci-0123456789abcdef"

local function authenticator(conf, core)
    local c = assert(schema.validate(auth.schema, conf or {
        keys = { [KEY] = { identity = "ci", scopes = { "demo.*" } } },
        hmac_secret = SECRET, max_ttl = 3600, failures = 3, failure_window = 10,
    }, "auth"))
    core = core or kit.core()
    return auth.new(c, core), core
end

describe("ghost.auth", function()
    it("authenticates a static API key: identity and scopes on the connection", function()
        local a = authenticator()
        local client = kit.client()
        assert.equal("ci", a:authenticate(client, KEY))
        assert.equal("ci", client.identity)
        assert.same({ "demo.*" }, client.scopes)
        assert.is_true(client.scope_match("demo.echo"))
        assert.is_false(client.scope_match("billing.pay"))
        assert.equal("k:" .. crypto.sha256_hex(KEY), client.identity_key)
        assert.is_nil(client.expires)
    end)

    it("looks keys up by their SHA-256 digest, so the lookup's timing says nothing about a key", function()
        local a = authenticator()
        local digests = {}
        for k, who in pairs(a.by_digest) do digests[#digests + 1] = k .. "=" .. who.identity end
        assert.same({ crypto.sha256_hex(KEY) .. "=ci" }, digests)
    end)

    it("authenticates an HMAC token: identity, scopes and expiry from the token", function()
        local a, core = authenticator()
        local token = crypto.token(SECRET, "alice", core.wall + 60, "demo.get_*,billing.**")
        local client = kit.client()
        assert.equal("alice", a:authenticate(client, token))
        assert.same({ "demo.get_*", "billing.**" }, client.scopes)
        assert.is_true(client.scope_match("demo.get_user"))
        assert.is_true(client.scope_match("billing.invoices.list"))
        assert.is_false(client.scope_match("demo.delete"))
        assert.equal(math.floor(core.wall + 60), client.expires)
        assert.equal("t:alice:demo.get_*,billing.**", client.identity_key)
    end)

    it("compares signatures with the host's constant-time comparison", function()
        local a, core = authenticator()
        local compared = {}
        core.consttime_eq = function(x, y)
            compared[#compared + 1] = { x, y }
            return x == y
        end
        local token = crypto.token(SECRET, "alice", core.wall + 60, "")
        assert.equal("alice", a:authenticate(kit.client(), token))
        local sig = token:match(":(%x+)$")
        assert.same({ { sig, sig } }, compared)
    end)

    it("mints tokens ghost.auth accepts (what `ghostgate token` prints)", function()
        local a, core = authenticator()
        local token = assert(auth.mint(core, SECRET, "svc-bot", 120, "demo.*"))
        assert.matches("^gg1:svc%-bot:%d+:demo%.%*:%x+$", token)
        assert.equal("svc-bot", a:authenticate(kit.client(), token))
        assert.same({ nil, "identity must be letters, digits, _ . @ -" },
            { auth.mint(core, SECRET, "a:b", 1) })
        assert.same({ nil, "scopes cannot contain ':'" }, { auth.mint(core, SECRET, "a", 1, "x:y") })
    end)

    it("refuses wrong, forged, expired and overlong tokens with 401", function()
        local a, core = authenticator({ hmac_secret = SECRET, max_ttl = 3600, failures = 100 })
        local good = crypto.token(SECRET, "alice", core.wall + 60, "")
        local cases = {
            { "nope", "invalid token" },
            { good:sub(1, -2) .. (good:sub(-1) == "0" and "1" or "0"), "invalid token" },
            { crypto.token(SECRET:upper(), "alice", core.wall + 60, ""), "invalid token" },
            { good:gsub("alice", "mallory"), "invalid token" },
            { crypto.token(SECRET, "alice", core.wall - 1, ""), "token expired" },
            { crypto.token(SECRET, "alice", core.wall + 7200, ""), "token lifetime exceeds max_ttl" },
            { "", "invalid token" },
            { string.rep("x", 5000), "invalid token" },
            { 42, "invalid token" },
        }
        for i, case in ipairs(cases) do
            local client = kit.client()
            assert.same({ nil, 401, case[2] }, { a:authenticate(client, case[1]) }, "case " .. i)
            assert.is_nil(client.identity)
        end
    end)

    it("throttles wrong tokens per client address: 429 with a retry-after, even for a right token", function()
        local a, core = authenticator()
        local from = kit.client({ host = "10.0.0.1" })
        for _ = 1, 3 do
            assert.same({ nil, 401, "invalid token" }, { a:authenticate(from, "wrong-token") })
        end
        core:advance(1)
        local id, code, msg, wait = a:authenticate(from, KEY)
        assert.same({ nil, 429 }, { id, code })
        assert.equal("too many failed authentications, retry after 9.0 s", msg)
        assert.near(9, wait, 1e-9)
        -- another address is not affected
        assert.equal("ci", a:authenticate(kit.client({ host = "10.0.0.2" }), KEY))
        -- the window passes: the address may try again
        core:advance(9.5)
        assert.equal("ci", a:authenticate(from, KEY))
    end)

    it("counts each wrong token in the cluster too, and throttles an address the cluster reports", function()
        local a, core = authenticator()
        local counted = {}
        core.cluster_auth_failed = function(addr, limit, window)
            counted[#counted + 1] = { addr, limit, window }
        end
        local from = kit.client({ host = "10.0.0.1" })
        assert.same({ nil, 401, "invalid token" }, { a:authenticate(from, "wrong-token") })
        assert.same({ { "10.0.0.1", 3, 10 } }, counted)
        -- the cluster counted 3 (on other gateways): 7 s of the window are left
        a:throttle("10.0.0.1", 7)
        local id, code, msg, wait = a:authenticate(from, KEY)
        assert.same({ nil, 429, "too many failed authentications, retry after 7.0 s" }, { id, code, msg })
        assert.near(7, wait, 1e-9)
        assert.equal(1, #counted) -- a refused attempt is not counted again
        a:throttle("10.0.0.3", 7) -- an address never seen here
        assert.equal(429, select(2, a:authenticate(kit.client({ host = "10.0.0.3" }), KEY)))
        core:advance(7.5)
        assert.equal("ci", a:authenticate(from, KEY))
    end)

    it("refuses short keys and short secrets at load time", function()
        local _, err = schema.validate(auth.schema, { keys = { short = { identity = "x" } } }, "auth")
        assert.equal("auth.keys.short: API keys must be at least 16 characters", err)
        _, err = schema.validate(auth.schema, { hmac_secret = "short" }, "auth")
        assert.equal("auth.hmac_secret: hmac_secret must be at least 32 characters", err)
        _, err = schema.validate(auth.schema, { keys = { [KEY] = { identity = "a b" } } }, "auth")
        assert.matches("identity: string \"a b\" does not match", err, 1, true)
    end)
end)

describe("auth policy", function()
    local function service(opts)
        local spec = { name = "auth" }
        for k, v in pairs(opts or {}) do spec[k] = v end
        return kit.service({ policies = { spec } })
    end

    local function authed(identity, scopes, expires)
        local glob = require "policies.glob"
        return kit.client({ identity = identity, scopes = scopes, scope_match = glob.compile(scopes),
                            identity_key = "t:" .. identity .. ":" .. table.concat(scopes, ","),
                            expires = expires })
    end

    it("refuses an unauthenticated connection with 401", function()
        local r = service():request("echo")
        assert.same({ "reject", 401, "service 'demo' requires authentication: call ghost.auth(token) first" },
            { r.verdict, r.code, r.message })
    end)

    it("lets an identity through when its scopes cover service.method, else 403", function()
        local h = service()
        local client = authed("alice", { "demo.get_*" })
        assert.equal("continue", h:request("get_user", {}, client).verdict)
        local r = h:request("delete_user", {}, client)
        assert.same({ "reject", 403, "identity 'alice' has no scope for 'demo.delete_user'" },
            { r.verdict, r.code, r.message })
    end)

    it("does not let '?' in a scope stand for the '.' between service and method", function()
        local h = service()
        local client = authed("bob", { "demo?get_x" })
        local r = h:request("get_x", {}, client)
        assert.same({ "reject", 403, "identity 'bob' has no scope for 'demo.get_x'" },
            { r.verdict, r.code, r.message })
    end)

    it("restricts the service to the listed identities", function()
        local h = service({ identities = { "ci" } })
        assert.equal("continue", h:request("x", {}, authed("ci", { "**" })).verdict)
        local r = h:request("x", {}, authed("alice", { "**" }))
        assert.same({ "reject", 403, "identity 'alice' may not call service 'demo'" },
            { r.verdict, r.code, r.message })
    end)

    it("refuses calls once the token has expired and forgets the identity", function()
        local h = service()
        local client = authed("alice", { "**" }, h.core.wall + 5)
        assert.equal("continue", h:request("x", {}, client).verdict)
        h.core:advance(5)
        local r = h:request("x", {}, client)
        assert.same({ "reject", 401, "token expired: call ghost.auth(token) again" },
            { r.verdict, r.code, r.message })
        assert.is_nil(client.identity)
        assert.equal(401, h:request("x", {}, client).code)
    end)
end)
