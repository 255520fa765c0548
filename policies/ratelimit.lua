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

local setmetatable, format = setmetatable, string.format

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
        },
    },
}

local mt = { __index = _M }

function _M.new(conf, service)
    local burst = conf.burst or conf.rate
    if burst < 1 then burst = 1 end
    return setmetatable({ rate = conf.rate, burst = burst, by = conf.by, per_method = conf.per == "method",
                          max_keys = conf.max_keys, buckets = {}, nkeys = 0, service = service }, mt)
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

function _M:access(ctx)
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
    local b
    if self.per_method then
        -- buckets[key] holds that key's buckets by method; every bucket counts in max_keys
        local per = self.buckets[key]
        if not per then
            per = bucket(self, self.buckets, key, now)
            per.methods = {}
        end
        b = bucket(self, per.methods, ctx.method, now)
    else
        b = bucket(self, self.buckets, key, now)
    end
    local tokens = b.tokens + (now - b.at) * self.rate
    if tokens > self.burst then tokens = self.burst end
    b.at = now
    if tokens < 1 then
        b.tokens = tokens
        local wait = (1 - tokens) / self.rate
        return ctx:reject("rate_limited", format("rate limit of %g calls/s exceeded for service '%s'",
            self.rate, self.service.name), wait)
    end
    b.tokens = tokens - 1
end

return _M
