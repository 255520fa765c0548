-- Callbacks meet the service's policies (docs/policies.md, "Callbacks"): when an upstream
-- calls a function or object a client passed, the decide phases run with `object` and
-- `callback` true and the access phases with ctx.callback, as the client the callback goes to.
-- guard's `callbacks` list names what may be called back; auth admits only an authenticated
-- client whose token has not expired; ratelimit counts callbacks in buckets of their own; route,
-- breaker and fallback leave them alone. A refused callback is answered to the upstream and
-- reaches nothing. Real ghostgate, real ghost.serve backend and clients.
local h = require "spec.support.helpers"
local crypto = require "spec.support.crypto"

local BACKEND = "spec/04-client/backends/callbacks.lua"
local SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret"
local KEY = "cb-key-0123456789abcdef"

describe("Callbacks meet the service's policies", function()
    local ghost, gw, f

    local function setup(policies, opts)
        f = h.setup_ghost({ cbs = { script = BACKEND, objects = true, policies = policies } }, opts)
        ghost, gw = f.ghost, f.gw
    end

    after_each(h.cleanup)

    it("guard: a `callbacks` list names the methods upstreams may call on clients' objects; "
        .. "the rest are 403 and reach nothing, functions pass", function()
        setup({ { name = "guard", allow = { "invoke", "nest" }, callbacks = { "hello" } } })
        local wiped = false
        local obj = ghost.ref({
            hello = function() return "hi" end,
            wipe = function() wiped = true; return true end,
        })
        assert.equal("hi", gw.cbs.invoke(obj, "hello"))
        assert.same({ code = 403, type = "forbidden",
                      message = "service 'cbs' may not call back 'wipe' on its clients" },
            gw.cbs.invoke(obj, "wipe"))
        assert.is_false(wiped)
        assert(f.gateway:wait_log('callback_refused service=cbs name="wipe" code=403'))
        local cb
        cb = function(k) return gw.cbs.nest(cb, k) end
        assert.equal(3, gw.cbs.nest(cb, 3)) -- a function has no name to list: it passes
    end)

    it("auth: a client whose token expired gets no more callbacks (401), and nothing reaches it",
        function()
        setup({ { name = "auth" } }, {
            config = { auth = { hmac_secret = SECRET, max_ttl = 3600,
                                keys = { [KEY] = { identity = "publisher", scopes = { "cbs.*" } } } } },
            connect = { token = KEY },
        })
        -- the subscriber's token lives 2 to 3 s (a whole second of the wall clock)
        local token = crypto.token(SECRET, "alice", math.floor(os.time()) + 3, "cbs.*")
        local sub = assert(ghost.connect(f.gateway.addr, { token = token }))
        local got = 0
        assert.equal(1, sub.cbs.subscribe(function(v) got = got + v; return "seen" end))
        assert.same({ "seen" }, gw.cbs.publish_each(1))
        assert.equal(1, got)
        local r
        local deadline = ghost.now() + h.timeout(3) + 3
        repeat
            ghost.sleep(0.05)
            r = gw.cbs.publish_each(1)
        until type(r[1]) == "table" or ghost.now() > deadline
        assert.same({ { code = 401, type = "unauthenticated", message = "the client's token expired" } }, r)
        local seen = got
        assert.same({ code = 401, type = "unauthenticated",
                      message = "service 'cbs' calls back only authenticated clients" },
            gw.cbs.publish_each(1)[1])
        assert.equal(seen, got)
        assert(f.gateway:wait_log('callback_refused service=cbs name="" code=401'))
        sub:close()
    end)

    it("ratelimit: callbacks to a client take tokens of their own (429 past the burst); the "
        .. "client's own calls keep theirs", function()
        setup({ { name = "ratelimit", rate = 0.01, burst = 2 } })
        local r = gw.cbs.fan(function() return true end, 4) -- the client's call: 1 of its 2 tokens
        table.sort(r, function(a, b) return tostring(a) < tostring(b) end)
        assert.same({ 429, 429, "ok", "ok" }, r)
        assert(f.gateway:wait_log('callback_refused service=cbs name="" code=429 reason="rate limit '
            .. 'of 0.01 callbacks/s to this client exceeded for service \'cbs\'"'))
        -- the client's own bucket still has its second token; then it is empty too
        assert.same({ 429 }, gw.cbs.fan(function() return true end, 1))
        local err = h.raised(function() return gw.cbs.fan(function() end, 1) end)
        assert.same({ 429, "rate_limited" }, { err[1], err[2] })
    end)

    it("ratelimit with scope = \"cluster\": callbacks' buckets live in Redis under service:-cb:key",
        function()
        local redis = assert(h.start_redis())
        setup({ { name = "ratelimit", rate = 0.01, burst = 2, by = "service", scope = "cluster" } },
            { config = { redis = redis.url } })
        assert(f.gateway:wait_log("redis_up name=cluster"))
        -- 4 at once: the first before any lease is on the local start (one token), the rest
        -- wait for Redis's verdict; at most the burst of 2 gets through
        local n = { ok = 0, [429] = 0 }
        for _, v in ipairs(gw.cbs.fan(function() return true end, 4)) do n[v] = n[v] + 1 end
        assert.is_true(n.ok >= 1 and n.ok <= 2 and n.ok + n[429] == 4, h.serialize(n))
        assert(f.gateway:wait_log("rate limit of 0.01 callbacks/s to this client exceeded"))
        local keys = assert(redis:cmd("KEYS", "*"))
        assert.matches("cbs:%-cb:", keys)
    end)

    it("breaker: a callback goes to its client while the service's breaker is open (it comes "
        .. "from the upstream the breaker judges)", function()
        setup({ { name = "route", strategy = "least_outstanding" },
                { name = "breaker", failures = 1, count_errors = true, cooldown = 60 },
                { name = "retry" }, { name = "fallback", on = { "upstream_unavailable" } } })
        local got
        assert.is_true(gw.cbs.later(function(v) got = v end, h.timeout(1), "later"))
        local err = h.raised(function() return gw.cbs.no_such_method() end) -- opens the breaker
        assert.equal(404, err[1])
        err = h.raised(function() return gw.cbs.echo(1) end)
        assert.same({ 530, "circuit_open" }, { err[1], err[2] })
        local deadline = ghost.now() + h.timeout(5)
        while not got and ghost.now() < deadline do ghost.sleep(0.01) end
        assert.equal("later", got)
        -- a round trip (still refused) after the callback's answer: the gateway has it before
        -- the client closes, or the backend's task would be answered 410 and fail
        err = h.raised(function() return gw.cbs.echo(2) end)
        assert.same({ 530, "circuit_open" }, { err[1], err[2] })
        assert.is_nil(f.gateway:logs():find("callback_refused", 1, true))
    end)

    it("your own policies see ctx.callback and can refuse one", function()
        local dir = h.tmpdir()
        assert(h.write_file(dir .. "/nocb.lua", [[
            return {
                name = "nocb", priority = 500, schema = { type = "record", fields = {} },
                new = function() return {} end,
                access = function(_, ctx)
                    if ctx.callback and ctx.object and ctx.method == "secret" then
                        return ctx:reject("forbidden", "no secrets called back")
                    end
                end,
            }
        ]]))
        setup({ { name = "nocb" } }, { config = { policy_path = dir .. "/?.lua" } })
        local obj = ghost.ref({ secret = function() return "s" end, open = function() return "o" end })
        assert.equal("o", gw.cbs.invoke(obj, "open"))
        assert.same({ code = 403, type = "forbidden", message = "no secrets called back" },
            gw.cbs.invoke(obj, "secret"))
    end)
end)
