-- route: which upstream endpoint of the service takes the call.
--
--   route { strategy = "round_robin" }                 (the default)
--   route { strategy = "weighted", weights = { 3, 1 } }
--   route { strategy = "least_outstanding" }
--   route { strategy = "hash", arg = 1 }               same first argument -> same endpoint
--
-- Endpoints with no live connection, or whose breaker is open, are skipped. When no endpoint
-- has a live connection (the gateway is still connecting, or reconnecting), the strategy picks
-- among those whose breaker is not open and the core sends the call on a connection being
-- opened, or answers `upstream_unavailable` at once. When breakers have opened every endpoint
-- the call fails with `circuit_open`.
-- A discover = true service's endpoints come and go (docs/scale-out.md): one that left the
-- registry is never picked, and with none registered the core answers.
-- "hash" is consistent hashing (virtual nodes on a ring): removing an endpoint moves only its
-- own keys.

local bit = require "bit"

local setmetatable, tostring, type, floor = setmetatable, tostring, type, math.floor
local bxor, tobit = bit.bxor, bit.tobit
local byte, sort = string.byte, table.sort

local _M = {
    name = "route",
    priority = 800,
    schema = {
        type = "record",
        fields = {
            strategy = { type = "string", default = "round_robin",
                         one_of = { "round_robin", "weighted", "least_outstanding", "hash" } },
            weights = { type = "array", elements = { type = "number", min = 0 } },
            arg = { type = "integer", default = 1, min = 1, description = "argument hashed (hash)" },
            field = { type = "string", description = "hash this field of the argument (a table)" },
            vnodes = { type = "integer", default = 160, min = 1, max = 10000 },
        },
    },
}

local mt = { __index = _M }

-- FNV-1a, 32 bits.
local function hash(s)
    local h = tobit(2166136261)
    for i = 1, #s do
        h = bxor(h, byte(s, i))
        h = tobit(h * 16777619)
    end
    return h
end

local function build_ring(self)
    local ring = {}
    for i = 1, #self.endpoints do
        local addr = self.endpoints[i].address
        for v = 1, self.vnodes do
            ring[#ring + 1] = { h = hash(addr .. "#" .. v), ep = i }
        end
    end
    sort(ring, function(a, b) return a.h < b.h end)
    self.ring = ring
end

-- Per-endpoint data of the strategy, for the service's endpoints (at start and on reload).
local function setup(self, service)
    local conf = self.conf
    self.endpoints = service.endpoints
    self.weights, self.current = {}, {}
    for i = 1, #service.endpoints do
        self.weights[i] = conf.weights and conf.weights[i] or 1
        self.current[i] = 0
    end
    if self.rr > #service.endpoints then self.rr = 0 end
    if conf.strategy == "hash" then build_ring(self) end
end

function _M.new(conf, service)
    local self = setmetatable({
        conf = conf, strategy = conf.strategy, rr = 0, vnodes = conf.vnodes, arg = conf.arg,
        field = conf.field, service = service,
        -- least_outstanding: the endpoint each call in flight was counted on, by call slot
        counted = {},
        -- only least_outstanding needs to hear about answers: the others cost no response phase
        wants_response = conf.strategy == "least_outstanding",
    }, mt)
    setup(self, service)
    return self
end

function _M:reload(service)
    setup(self, service)
end

-- Live, and not behind an open breaker (once the breaker's cooldown is over the endpoint is
-- usable again, so that its half-open probes can reach it). With `any`, live or not.
local function usable(e, self, any)
    if e.removed then return false end -- discover = true: no longer registered
    if e.connected == 0 and not any then return false end
    if e.open then return self.service.now() >= (e.retry_at or 0) end
    return true
end

local pick = {}

function pick.round_robin(self, _, any)
    local eps = self.endpoints
    local n = #eps
    for _ = 1, n do
        self.rr = self.rr % n + 1
        if usable(eps[self.rr], self, any) then return self.rr end
    end
end

-- Smooth weighted round robin (as nginx): every endpoint gains its weight, the richest is
-- chosen and pays the total.
function pick.weighted(self, _, any)
    local eps, w, cur = self.endpoints, self.weights, self.current
    local best, total = nil, 0
    for i = 1, #eps do
        if w[i] > 0 and usable(eps[i], self, any) then
            cur[i] = cur[i] + w[i]
            total = total + w[i]
            if not best or cur[i] > cur[best] then best = i end
        end
    end
    if best then cur[best] = cur[best] - total end
    return best
end

function _M.pick_least(self, _, any)
    local eps = self.endpoints
    local best
    local n = #eps
    self.rr = self.rr % n + 1 -- rotate the start so ties spread
    for k = 0, n - 1 do
        local i = (self.rr + k - 1) % n + 1
        local e = eps[i]
        if (not best or e.inflight < eps[best].inflight) and usable(e, self, any) then best = i end
    end
    return best
end
pick.least_outstanding = _M.pick_least

function pick.hash(self, ctx, any)
    local args = ctx:args()
    local v = type(args) == "table" and args[self.arg]
    if self.field and type(v) == "table" then v = v[self.field] end
    local h = hash(tostring(v))
    local ring = self.ring
    -- first vnode at or after h, walking on past endpoints that are not usable
    local lo, hi = 1, #ring
    while lo < hi do
        local mid = floor((lo + hi) / 2)
        if ring[mid].h < h then lo = mid + 1 else hi = mid end
    end
    if ring[lo].h < h then lo = 1 end
    for k = 0, #ring - 1 do
        local node = ring[(lo + k - 1) % #ring + 1]
        if usable(self.endpoints[node.ep], self, any) then return node.ep end
    end
end

function _M:access(ctx)
    if ctx.callback then return end -- it goes to the client that passed the function
    local choose = pick[self.strategy]
    local i = choose(self, ctx, false) or choose(self, ctx, true)
    if not i then
        local eps, open, live = self.endpoints, 0, 0
        for k = 1, #eps do
            if not eps[k].removed then
                live = live + 1
                if eps[k].open then open = open + 1 end
            end
        end
        -- discover = true with nothing registered: the core answers (no endpoint registered)
        if live == 0 then return end
        if open == live then
            return ctx:reject("circuit_open",
                "circuit open for every upstream of service '" .. self.service.name .. "'")
        end
        return ctx:reject("upstream_unavailable",
            "no upstream of service '" .. self.service.name .. "' is reachable")
    end
    ctx:set_endpoint(i)
    if self.strategy == "least_outstanding" then
        local e = self.endpoints[i]
        e.inflight = e.inflight + 1
        self.counted[ctx.slot] = e
    end
end

-- least_outstanding: the call is over (answered, failed, or refused after this policy chose
-- its endpoint).
function _M:response(ctx)
    local e = self.counted[ctx.slot]
    if e then
        self.counted[ctx.slot] = nil
        if e.inflight > 0 then e.inflight = e.inflight - 1 end
    end
end

_M.hash = hash

return _M
