-- ghost.gateway: what the C core asks of Lua when a gateway starts or reloads: the policy
-- pipelines of the services and the authenticator.

local policy = require "ghost.policy"
local auth = require "ghost.auth"

local pairs, ipairs, next, setmetatable = pairs, ipairs, next, setmetatable

local _M = {}

-- An adapter service has no upstreams. The policies that work per endpoint (breaker, route)
-- see one: the adapter itself, which the core reports as always connected
-- (gateway/upstreams/adapter.c).
-- A discover = true service's endpoints come from the registry: on reload the new pipeline
-- starts with those of the old one (the core then tells it the exact list), so that breakers
-- keep the state of the addresses they knew.
local function with_endpoints(svc, prev)
    if svc.discover then
        local list = {}
        for i, e in ipairs(prev and prev.endpoints or {}) do list[i] = e.address end
        return setmetatable({ upstreams = list }, { __index = svc })
    end
    if not svc.adapter or #svc.upstreams > 0 then return svc end
    return setmetatable({ upstreams = { "adapter:" .. svc.adapter } }, { __index = svc })
end

--- Build everything for the normalised config `cfg`. `host` holds the core's functions
-- (args, args_raw, now, sha256_hex, hmac_sha256_hex, consttime_eq). `old` is the previous
-- result, on reload (unchanged policies keep their state).
-- Returns { services = { name = pipeline }, auth = authenticator or nil }.
function _M.start(cfg, host, old)
    local out = { services = {} }
    -- kept instances move to the new pipelines only once all of them are built: a new() that
    -- fails leaves the running ones untouched (the reload is refused)
    local moves = {}
    for name, svc in pairs(cfg.services) do
        if next(svc.policies) then
            local prev = old and old.services[name]
            out.services[name] = policy.build(name, svc.policies, with_endpoints(svc, prev), host,
                prev, moves)
        end
    end
    policy.commit(moves)
    local a = cfg.auth
    if a and (next(a.keys) or a.hmac_secret or next(a.certs)) then out.auth = auth.new(a, host) end
    return out
end

-- Flags the core reads once per service: whether it runs a request phase, a response phase,
-- passes results to Lua (a module sets wants_result) and keeps a copy of each request so that a
-- policy can retry it (a module sets keeps_request); and the policy names, in the order the
-- watchdog numbers them.
function _M.flags(p)
    return p.has_request, p.has_response, p.wants_result, p.keeps_request, policy.names(p)
end

local breaker_state = { closed = 0, open = 1, half_open = 2 }

--- Breaker states for /metrics: { { service, upstream, state number }, ... }.
function _M.breakers(built)
    local out = {}
    for name, p in pairs(built.services) do
        for _, e in ipairs(p.instances) do
            if e.name == "breaker" and e.instance.states then
                for _, st in ipairs(e.instance:states()) do
                    -- "": a free endpoint number of a discover = true service
                    if st.address ~= "" then
                        out[#out + 1] = { name, st.address, breaker_state[st.state] or 0 }
                    end
                end
            end
        end
    end
    return out
end

--- A peer's breaker message (gateway/proxy/cluster_breaker.c): hand it to the breakers of
-- `service`. Returns whether one of them has `upstream`.
function _M.breaker_remote(built, service, upstream, state, cooldown)
    local p = built.services[service]
    if not p then return false end
    local known = false
    for _, e in ipairs(p.instances) do
        if e.name == "breaker" and e.instance.remote and e.instance:remote(upstream, state, cooldown) then
            known = true
        end
    end
    return known
end

_M.request = policy.request
_M.response = policy.response
_M.callback = policy.callback
_M.endpoint_state = policy.endpoint_state
_M.set_endpoints = policy.set_endpoints

return _M
