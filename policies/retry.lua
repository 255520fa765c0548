-- retry: send a failed call again, when that is safe and cheap.
--
--   retry { attempts = 3, idempotent = { "get_*", "list" } }
--
-- Only gateway errors on the way to the upstream are retried, never errors the upstream
-- returned: `upstream_unavailable` when the call provably never reached the upstream (no
-- connection took it: outcome.sent is false), whatever the method; `upstream_unavailable`
-- after it was sent (the connection died) only for idempotent methods (listed here, or in the
-- service's `idempotent` list). `deadline_exceeded` is the whole call's deadline, so it is
-- never retried. Backoff is exponential with full jitter: a random wait in
-- [0, min(max_backoff, backoff * 2^(attempt-1))]. A retry budget keeps retries under `budget`
-- per call made (plus a reserve of 10), so that retries cannot multiply an outage; the core
-- never schedules a retry past the call's deadline. Each attempt runs the request phase
-- again: route and breaker may choose another endpoint.

local glob = require "policies.glob"
local codes = require("ghost.consts").errors

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
    if outcome.code ~= codes.upstream_unavailable then return end
    -- never left the gateway, or safe to send twice
    local safe = not outcome.sent or self.idempotent(ctx.method)
    if not safe or self.tokens < 1 then return end
    self.tokens = self.tokens - 1
    local cap = self.conf.backoff * 2 ^ (outcome.attempt - 1)
    if cap > self.conf.max_backoff then cap = self.conf.max_backoff end
    ctx:retry(random() * cap)
end

return _M
