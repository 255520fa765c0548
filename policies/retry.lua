-- retry: send a failed call again, when that is safe and cheap.
--
--   retry { attempts = 3, idempotent = { "get_*", "list" } }
--
-- A call is retried only if its method is idempotent (listed here, or in the service's
-- `idempotent` list) or if it provably never reached the upstream (no connection could take
-- it). Only failures of the way there count: `upstream_unavailable` and, for idempotent
-- methods, `deadline_exceeded` of the attempt... never errors the upstream returned.
-- Backoff is exponential with full jitter: a random wait in [0, min(max_backoff,
-- backoff * 2^attempt)]. A retry budget keeps retries under `budget` (a fraction) of the calls,
-- so that retries cannot multiply an outage; the core never retries past the call's deadline.

local glob = require "policies.glob"

local setmetatable, ipairs, random = setmetatable, ipairs, math.random

local _M = {
    name = "retry",
    priority = 500,
    schema = {
        type = "record",
        fields = {
            attempts = { type = "integer", default = 3, min = 1, max = 10,
                         description = "attempts in all, the first included" },
            idempotent = { type = "array", elements = { type = "string" },
                           default = function() return {} end },
            backoff = { type = "number", default = 0.05, min = 0 },
            max_backoff = { type = "number", default = 1, min = 0 },
            budget = { type = "number", default = 0.2, min = 0, max = 10,
                       description = "retries allowed per call made, on average" },
        },
    },
    -- the core keeps a copy of the request of every call of a service with this policy
    keeps_request = true,
}

local mt = { __index = _M }

function _M.new(conf, service)
    local list = {}
    for i, g in ipairs(conf.idempotent) do list[i] = g end
    for _, g in ipairs(service.idempotent or {}) do list[#list + 1] = g end
    return setmetatable({ conf = conf, idempotent = glob.compile(list), tokens = 10, service = service }, mt)
end

function _M:response(ctx, outcome)
    if outcome.attempt == 1 then
        -- every first attempt earns a fraction of a retry, up to a small reserve
        local t = self.tokens + self.conf.budget
        self.tokens = t > 10 and 10 or t
    end
    if outcome.ok or outcome.kind ~= "gateway_error" then return end
    if outcome.attempt >= self.conf.attempts then return end
    local code = outcome.code
    local safe
    if code == 502 and not outcome.sent then
        safe = true -- never left the gateway
    elseif code == 502 or code == 504 then
        safe = self.idempotent(ctx.method)
    end
    if not safe or self.tokens < 1 then return end
    self.tokens = self.tokens - 1
    local cap = self.conf.backoff * 2 ^ (outcome.attempt - 1)
    if cap > self.conf.max_backoff then cap = self.conf.max_backoff end
    ctx:retry(random() * cap)
end

return _M
