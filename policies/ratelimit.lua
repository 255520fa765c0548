-- ratelimit: a token bucket per client identity (or address), per service or per method.
--
--   ratelimit { rate = 100, burst = 200 }                      per identity, whole service
--   ratelimit { rate = 10, by = "address", per = "method" }
--
-- Over the limit a call fails with `rate_limited`; the error carries `retry_after` (seconds
-- until a token is back). Buckets live in the gateway process (each worker has its own).
-- It runs before route and breaker (priority 850): a refused call takes no endpoint or probe.
-- No table is built per call: buckets are two numbers in tables keyed by identity (and by
-- method with per = "method"), created once per key. At most `max_keys` buckets are kept;
-- beyond that they are all forgotten at once (a refill, never a leak). Buckets survive a
-- reload that leaves the policy's options unchanged.
--
-- scope = "cluster" (needs the top-level `redis` option): the limit holds for all the gateways
-- sharing that Redis together. Each bucket lives in Redis; every gateway takes tokens from it
-- in small leases, in the background, and spends them locally (gateway/core/ratelease.c): a
-- call never waits for Redis. While Redis is unreachable, on_redis_error decides: "local" (a
-- bucket of this process at 1/workers of the rate), "open" (admit all) or "closed" (refuse all).
--
-- Callbacks (the service's upstreams calling what a client passed) take tokens from buckets of
-- their own, keyed the same way by the client they go to: the rate then caps how fast the
-- service may call back one client, and never eats into that client's own calls. In Redis
-- they are named service:-cb:key (or service:method:-cb:key).

local setmetatable, format, pcall = setmetatable, string.format, pcall
local ffi = require "ffi"

-- (pcall: a second copy of this module in the same state must not fail on a redefinition)
pcall(ffi.cdef, [[
void *gg_cluster_bucket(void *server, const char *service, const char *key, double rate,
                        double burst, const char *on_error);
int gg_cluster_take(void *b);
void gg_cluster_bucket_free(void *b);
]])

local _M = {
    name = "ratelimit",
    priority = 850,
    schema = {
        type = "record",
        fields = {
            rate = { type = "number", required = true, min = 0.001, description = "tokens per second" },
            burst = { type = "number", min = 1, description = "bucket size (default: rate, at least 1)" },
            by = { type = "string", default = "identity", one_of = { "identity", "address", "service" } },
            per = { type = "string", default = "service", one_of = { "service", "method" } },
            max_keys = { type = "integer", default = 100000, min = 1 },
            scope = { type = "string", default = "local", one_of = { "local", "cluster" },
                      description = "local: per gateway process; cluster: shared by all the "
                          .. "gateways on the top-level redis" },
            on_redis_error = { type = "string", default = "local", one_of = { "local", "open", "closed" },
                               description = "scope = cluster while Redis is unreachable: a local "
                                   .. "bucket at 1/workers of the rate, admit all, or refuse all" },
        },
    },
}

local mt = { __index = _M }

local LIMIT = "rate limit of %g calls/s exceeded for service '%s'"
local LIMIT_CB = "rate limit of %g callbacks/s to this client exceeded for service '%s'"

function _M.new(conf, service)
    local burst = conf.burst or conf.rate
    if burst < 1 then burst = 1 end
    local self = setmetatable({ rate = conf.rate, burst = burst, by = conf.by,
                                per_method = conf.per == "method", max_keys = conf.max_keys,
                                buckets = {}, nkeys = 0, service = service,
                                on_redis_error = conf.on_redis_error }, mt)
    if conf.scope == "cluster" then
        -- the server's pointer, for the FFI (none in `ghostgate check`: access never runs there)
        local server = require("ghost.host").server
        self.server = server and ffi.cast("void *", server)
        self.cluster = true
    end
    return self
end

-- The bucket of `key` in `buckets` (self.buckets, or one key's per-method table).
local function bucket(self, buckets, key, now)
    local b = buckets[key]
    if b then return b end
    if self.nkeys >= self.max_keys then
        self.buckets, self.nkeys = {}, 0
        buckets = self.buckets
    end
    b = { tokens = self.burst, at = now }
    buckets[key] = b
    self.nkeys = self.nkeys + 1
    return b
end

-- scope = "cluster": the bucket of a key is a lease handle made once per key; admitting a
-- call is one FFI call that reads and writes a few numbers in C (no Redis round trip).
local C = ffi.C

-- The bucket of `k` in `buckets` (self.buckets, or one key's per-method table), named
-- service:key or service:method:key in Redis.
local function cluster_bucket(self, buckets, k, key, method)
    local b = buckets[k]
    if b then return b end
    if self.nkeys >= self.max_keys then
        self.buckets, self.nkeys = {}, 0
        buckets = self.buckets
    end
    local name = method and method .. ":" .. key or key
    b = C.gg_cluster_bucket(self.server, self.service.name, name, self.rate, self.burst,
        self.on_redis_error)
    if b == nil then return nil end
    b = ffi.gc(b, C.gg_cluster_bucket_free)
    buckets[k] = b
    self.nkeys = self.nkeys + 1
    return b
end

-- Callbacks' buckets: a table under this key of self.buckets. Keys are identity keys ("k:",
-- "c:", "t:"...), addresses or "": none starts with a NUL.
local CALLBACKS = "\0callbacks"

-- Where the buckets of ctx's kind live: self.buckets, or the callbacks' table in it.
local function root(self, ctx)
    if not ctx.callback then return self.buckets end
    local r = self.buckets[CALLBACKS]
    if not r then
        if self.nkeys >= self.max_keys then self.buckets, self.nkeys = {}, 0 end
        r = {}
        self.buckets[CALLBACKS] = r
        self.nkeys = self.nkeys + 1
    end
    return r
end

local function access_cluster(self, ctx)
    local c = ctx.client
    local key
    if self.by == "identity" then
        key = c.identity_key or c.host or c.address
    elseif self.by == "address" then
        key = c.host or c.address
    else
        key = ""
    end
    local buckets, name = root(self, ctx), key
    if ctx.callback then name = "-cb:" .. key end -- no key starts with "-"
    local b
    if self.per_method then
        -- buckets[key] holds that key's buckets by method; the table counts in max_keys too
        local per = buckets[key]
        if not per then
            if self.nkeys >= self.max_keys then self.buckets, self.nkeys = {}, 0 end
            per = {}
            buckets[key] = per
            self.nkeys = self.nkeys + 1
        end
        b = cluster_bucket(self, per, ctx.method, name, ctx.method)
    else
        b = cluster_bucket(self, buckets, key, name)
    end
    if b == nil or C.gg_cluster_take(b) == 0 then
        return ctx:reject("rate_limited", format(ctx.callback and LIMIT_CB or LIMIT, self.rate,
            self.service.name), 1 / self.rate)
    end
end

function _M:access(ctx)
    if self.cluster then return access_cluster(self, ctx) end
    local c = ctx.client
    local key
    if self.by == "identity" then
        key = c.identity_key or c.host or c.address
    elseif self.by == "address" then
        key = c.host or c.address
    else
        key = ""
    end
    local now = self.service.now()
    local buckets = root(self, ctx)
    local b
    if self.per_method then
        -- buckets[key] holds that key's buckets by method; every bucket counts in max_keys
        local per = buckets[key]
        if not per then
            per = bucket(self, buckets, key, now)
            per.methods = {}
        end
        b = bucket(self, per.methods, ctx.method, now)
    else
        b = bucket(self, buckets, key, now)
    end
    local tokens = b.tokens + (now - b.at) * self.rate
    if tokens > self.burst then tokens = self.burst end
    b.at = now
    if tokens < 1 then
        b.tokens = tokens
        local wait = (1 - tokens) / self.rate
        return ctx:reject("rate_limited", format(ctx.callback and LIMIT_CB or LIMIT, self.rate,
            self.service.name), wait)
    end
    b.tokens = tokens - 1
end

return _M
