-- breaker: stop sending calls to an upstream endpoint that keeps failing.
--
--   breaker { failures = 5 }                                   5 failures in a row open it
--   breaker { ratio = 0.5, window = 10, min_calls = 20 }       or half the calls of 10 s
--
-- closed -> open after `failures` consecutive failures, or when at least `min_calls` calls in
-- the last `window` seconds failed at `ratio` or more. While open every call fails at once
-- with `circuit_open` and nothing is sent upstream. After `cooldown` seconds it is half-open:
-- `probes` calls go through; a success closes it, a failure opens it again for twice the
-- cooldown, up to `max_cooldown`. Timeouts (504) and connection failures (502) count;
-- errors the upstream itself returns count only with `count_errors = true`.
-- State is per endpoint and survives a reload of an unchanged service.
--
-- With the top-level `redis` option (and `share`, on by default) the gateways on that Redis
-- share what their breakers learn: one that opens (or closes) a breaker publishes it, and the
-- others treat the endpoint as suspect at once: open for the cooldown the publisher chose,
-- then half-open, probing on their own (gateway/proxy/cluster_breaker.c). A peer's "closed"
-- ends that wait early, so the next call probes; only a gateway's own probe closes its breaker.

local setmetatable, ipairs, pairs, pcall = setmetatable, ipairs, pairs, pcall
local floor, format = math.floor, string.format
local codes = require("ghost.consts").errors
local ffi = require "ffi"

-- (pcall: a second copy of this module in the same state must not fail on a redefinition)
pcall(ffi.cdef, [[
int gg_cluster_breaker_publish(void *server, const char *service, const char *upstream,
                               const char *state, double cooldown);
]])
local C = ffi.C

local _M = {
    name = "breaker",
    priority = 700,
    schema = {
        type = "record",
        fields = {
            failures = { type = "integer", default = 5, min = 1 },
            ratio = { type = "number", min = 0.01, max = 1 },
            window = { type = "number", default = 10, min = 1, max = 3600 },
            min_calls = { type = "integer", default = 20, min = 1 },
            cooldown = { type = "number", default = 5, min = 0.01 },
            max_cooldown = { type = "number", default = 60, min = 0.01 },
            probes = { type = "integer", default = 1, min = 1 },
            count_errors = { type = "boolean", default = false,
                             description = "count errors returned by the upstream as failures" },
            share = { type = "boolean", default = true,
                      description = "with the top-level redis: publish this breaker's openings and "
                          .. "closings, and follow the other gateways' (docs/scale-out.md)" },
        },
    },
}

local mt = { __index = _M }

local CLOSED, OPEN, HALF_OPEN = 0, 1, 2
_M.CLOSED, _M.OPEN, _M.HALF_OPEN = CLOSED, OPEN, HALF_OPEN
local state_names = { [0] = "closed", "open", "half_open" }

local function new_state(conf)
    local calls, fails = {}, {}
    for i = 0, conf.window - 1 do
        calls[i], fails[i] = 0, 0
    end
    return { state = CLOSED, consecutive = 0, opened_at = 0, cooldown = conf.cooldown,
             probes = 0, calls = calls, fails = fails, second = 0 }
end

function _M.new(conf, service)
    local self = setmetatable({ conf = conf, service = service, endpoints = {},
                                nwindow = floor(conf.window), rr = 0, probe = {} }, mt)
    if conf.share then
        -- the server's pointer, for the FFI: only in a running gateway (none in `ghostgate
        -- check` or a unit test, where nothing is published)
        local ok, host = pcall(require, "ghost.host")
        local server = ok and host.server
        if server and pcall(function() return C.gg_cluster_breaker_publish end) then
            self.server = ffi.cast("void *", server)
        end
    end
    self:reload(service)
    return self
end

-- Keep each endpoint's state across a reload, by address.
function _M:reload(service)
    local old = self.endpoints
    self.endpoints = {}
    self.eps = service.endpoints
    for i, e in ipairs(service.eps or service.endpoints) do
        local prev
        for _, o in pairs(old) do
            if o.address == e.address then prev = o end
        end
        local st = prev or new_state(self.conf)
        self.endpoints[i] = st
        st.address = e.address
        -- the route policy reads these: an open endpoint is skipped until retry_at
        e.open = st.state ~= CLOSED
        e.retry_at = st.state == OPEN and st.opened_at + st.cooldown or 0
    end
    self.service = service
end

-- Roll the per-second window forward to `now`, clearing the seconds that passed.
local function roll(self, st, now)
    local sec = floor(now)
    local n = self.nwindow
    if sec - st.second >= n then
        for i = 0, n - 1 do
            st.calls[i], st.fails[i] = 0, 0
        end
    else
        for s = st.second + 1, sec do
            st.calls[s % n], st.fails[s % n] = 0, 0
        end
    end
    st.second = sec
end

-- eps[i].open and retry_at tell the route policy to skip this endpoint until retry_at.
-- One log line when a breaker opens and one when it closes, whatever happens in between: a
-- failed probe reopening it and the calls it refused are counted and given with the close.
-- `why` says what opened it (nil: a failed probe reopened it).
-- Tell the peers (a no-op without redis): rare, on state changes only.
local function publish(self, i, state, cooldown)
    local server = self.server
    if server then
        C.gg_cluster_breaker_publish(server, self.service.name, self.eps[i].address, state, cooldown)
    end
end

local function open(self, st, i, now, cooldown, why)
    if why then
        st.since, st.reopened, st.refused = now, 0, 0
        self.service.log("warn", "breaker_opened", format("service=%s upstream=%s reason=\"%s\" cooldown=%g",
            self.service.name, self.eps[i].address, why, cooldown))
    else
        st.reopened = (st.reopened or 0) + 1
        self.service.log("debug", "breaker_reopened", format("service=%s upstream=%s cooldown=%g",
            self.service.name, self.eps[i].address, cooldown))
    end
    st.state, st.opened_at, st.cooldown, st.probes, st.peer = OPEN, now, cooldown, 0, nil
    self.eps[i].open, self.eps[i].retry_at = true, now + cooldown
    publish(self, i, "open", cooldown)
end

local function close(self, st, i, now)
    st.state, st.consecutive, st.cooldown, st.probes, st.peer = CLOSED, 0, self.conf.cooldown, 0, nil
    self.eps[i].open = false
    self.service.log("notice", "breaker_closed",
        format("service=%s upstream=%s open_s=%.3f reopened=%d refused=%d", self.service.name,
            self.eps[i].address, now - (st.since or now), st.reopened or 0, st.refused or 0))
    publish(self, i, "closed", 0)
end

--- A peer gateway's breaker for `address` went `state` ("open" for `cooldown` seconds, or
-- "closed"). Returns whether this breaker has that endpoint (the core counts the others).
-- Open: the endpoint is open here until the peer's cooldown ends (never shortened, and a probe
-- of ours in flight decides alone), then half-open. Closed: a wait a peer imposed ends now, so
-- the next call probes. Nothing a peer says closes this breaker or is published again.
function _M:remote(address, state, cooldown)
    if not self.conf.share then return false end
    for i, st in ipairs(self.endpoints) do
        if st.address == address then
            local now = self.service.now()
            if state == "open" then
                -- never longer than this breaker would wait itself
                if cooldown > self.conf.max_cooldown then cooldown = self.conf.max_cooldown end
                local busy = st.state == HALF_OPEN and st.probes > 0
                local longer = st.state == OPEN and st.opened_at + st.cooldown >= now + cooldown
                if not busy and not longer then
                    if st.state == CLOSED then
                        st.since, st.reopened, st.refused = now, 0, 0
                        self.service.log("warn", "breaker_opened", format(
                            "service=%s upstream=%s reason=\"opened by a peer\" cooldown=%g",
                            self.service.name, address, cooldown))
                    end
                    -- open until now + cooldown; a failed probe then doubles at least our own
                    -- cooldown (a peer's 0 must not make every call a probe)
                    local base = cooldown > self.conf.cooldown and cooldown or self.conf.cooldown
                    st.state, st.opened_at, st.cooldown, st.probes, st.peer =
                        OPEN, now + cooldown - base, base, 0, true
                    self.eps[i].open, self.eps[i].retry_at = true, now + cooldown
                end
            elseif st.state == OPEN and st.peer then
                st.opened_at = now - st.cooldown
                self.eps[i].retry_at = now
            end
            return true
        end
    end
    return false
end

-- Would this endpoint's breaker let a call through now?
local function admits(self, st)
    local state = st.state
    if state == CLOSED then return true end
    if state == OPEN then return self.service.now() >= st.opened_at + st.cooldown end
    return st.probes < self.conf.probes
end

function _M:access(ctx)
    if ctx.callback then return end -- it comes from an upstream and goes to a client
    local i = ctx.endpoint
    if i == 0 then
        -- nobody chose (no route policy): take the next endpoint whose breaker lets calls
        -- through; when none does, the next one, which refuses the call below
        local n = #self.endpoints
        if n == 0 then return end -- discover = true with nothing registered: the core answers
        for _ = 1, n do
            self.rr = self.rr % n + 1
            if admits(self, self.endpoints[self.rr]) then
                i = self.rr
                break
            end
        end
        if i == 0 then i = self.rr % n + 1 end
        ctx:set_endpoint(i)
    end
    local st = self.endpoints[i]
    if st.state == CLOSED then return end
    local now = self.service.now()
    if st.state == OPEN then
        local left = st.opened_at + st.cooldown - now
        if left > 0 then
            st.refused = (st.refused or 0) + 1
            return ctx:reject("circuit_open", format("circuit open for upstream %s of service '%s'",
                self.eps[i].address, self.service.name), left)
        end
        st.state, st.probes = HALF_OPEN, 0
    end
    -- half-open: a bounded number of probes
    if st.probes >= self.conf.probes then
        self.eps[i].retry_at = now + st.cooldown
        st.refused = (st.refused or 0) + 1
        return ctx:reject("circuit_open", format("circuit half-open for upstream %s of service '%s': probing",
            self.eps[i].address, self.service.name), st.cooldown)
    end
    st.probes = st.probes + 1
    self.probe[ctx.slot] = true
end

function _M:response(ctx, outcome)
    local i = ctx.endpoint
    local st = self.endpoints[i]
    if not st then return end
    local probe = self.probe[ctx.slot]
    if probe then self.probe[ctx.slot] = nil end
    local kind = outcome.kind
    if kind == "rejected" or kind == "responded" or kind == "notified" then
        -- the call never went upstream, or is a notification (no answer to judge): give its
        -- probe back, count nothing
        if probe and st.state == HALF_OPEN and st.probes > 0 then st.probes = st.probes - 1 end
        return
    end
    local failed
    if outcome.ok then
        failed = false
    elseif kind == "gateway_error" then
        failed = outcome.code == codes.upstream_unavailable or outcome.code == codes.deadline_exceeded
        if not failed and not probe then return end
    else
        failed = self.conf.count_errors
    end
    local now = self.service.now()
    if st.state == HALF_OPEN then
        if not probe then return end
        st.probes = st.probes - 1
        if failed then
            local c = st.cooldown * 2
            if c > self.conf.max_cooldown then c = self.conf.max_cooldown end
            open(self, st, i, now, c)
        else
            close(self, st, i, now)
        end
        return
    end
    if st.state == OPEN then return end
    roll(self, st, now)
    local slot = st.second % self.nwindow
    st.calls[slot] = st.calls[slot] + 1
    if not failed then
        st.consecutive = 0
        return
    end
    st.fails[slot] = st.fails[slot] + 1
    st.consecutive = st.consecutive + 1
    if st.consecutive >= self.conf.failures then
        return open(self, st, i, now, self.conf.cooldown, format("%d failures in a row", st.consecutive))
    end
    local ratio = self.conf.ratio
    if ratio then
        local calls, fails = 0, 0
        for k = 0, self.nwindow - 1 do
            calls, fails = calls + st.calls[k], fails + st.fails[k]
        end
        if calls >= self.conf.min_calls and fails / calls >= ratio then
            open(self, st, i, now, self.conf.cooldown, format("%d of %d calls failed", fails, calls))
        end
    end
end

--- State of every endpoint, for /metrics and tests: { {address=, state="open", ...}, ... }
function _M:states()
    local out = {}
    for i, st in ipairs(self.endpoints) do
        out[i] = { address = st.address, state = state_names[st.state], consecutive = st.consecutive,
                   cooldown = st.cooldown }
    end
    return out
end

return _M
