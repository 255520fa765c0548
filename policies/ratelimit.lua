-- ratelimit: a token bucket per client identity (or address), per service or per method.
--
--   ratelimit { rate = 100, burst = 200 }                      per identity, whole service
--   ratelimit { rate = 10, by = "address", per = "method" }
--
-- Over the limit a call fails with `rate_limited`; the error carries `retry_after` (seconds
-- until a token is back). Buckets live in the gateway process (each worker has its own).
-- No table is built per call: buckets are two numbers in tables keyed by identity (and by
-- method with per = "method"), created once per key. At most `max_keys` keys are kept;
-- beyond that the oldest generation of buckets is forgotten (a refill, never a leak).

local setmetatable, format = setmetatable, string.format

local _M = {
    name = "ratelimit",
    priority = 600,
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

local function bucket(self, key, now)
    local b = self.buckets[key]
    if b then return b end
    if self.nkeys >= self.max_keys then
        self.buckets, self.nkeys = {}, 0
    end
    b = { tokens = self.burst, at = now }
    self.buckets[key] = b
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
        local per = self.buckets[key]
        if not per then
            per = bucket(self, key, now)
            per.methods = per.methods or {}
        end
        b = per.methods[ctx.method]
        if not b then
            b = { tokens = self.burst, at = now }
            per.methods[ctx.method] = b
        end
    else
        b = bucket(self, key, now)
    end
    local tokens = b.tokens + (now - b.at) * self.rate
    if tokens > self.burst then tokens = self.burst end
    b.at = now
    if tokens < 1 then
        b.tokens = tokens
        local wait = (1 - tokens) / self.rate
        return ctx:reject(429, format("rate limit of %g calls/s exceeded for service '%s'", self.rate,
            self.service.name), wait)
    end
    b.tokens = tokens - 1
end

return _M
