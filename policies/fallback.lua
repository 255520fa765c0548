-- fallback: when a call fails, answer with the last good answer to the same call, or a value.
--
--   fallback { ttl = 60, size = 1000 }         last good answer for the same method and args
--   fallback { value = { status = "unknown" } } a static answer
--
-- Applies to failures whose type is listed in `on` (by default: upstream_unavailable,
-- deadline_exceeded, circuit_open), including calls an open breaker refused. Answers are kept
-- as the exact MessagePack bytes the upstream sent, in a bounded LRU with a time to live.

local setmetatable, ipairs = setmetatable, ipairs

local _M = {
    name = "fallback",
    priority = 1100, -- its access phase must see the args before anyone refuses the call
    schema = {
        type = "record",
        fields = {
            ttl = { type = "number", default = 60, min = 0.001 },
            size = { type = "integer", default = 1000, min = 0, max = 1000000 },
            value = { type = "any", description = "static answer when nothing is cached" },
            on = { type = "array", default = function()
                       return { "upstream_unavailable", "deadline_exceeded", "circuit_open" }
                   end,
                   elements = { type = "string", one_of = { "upstream_unavailable", "deadline_exceeded",
                                "circuit_open", "overloaded", "rate_limited", "internal" } },
                   description = "the gateway errors answered from the fallback" },
        },
    },
    wants_result = true,
}

local mt = { __index = _M }

local codes = require("ghost.consts").errors

function _M.new(conf, service)
    local on = {}
    for _, name in ipairs(conf.on) do
        if codes[name] then on[codes[name]] = true end
    end
    -- LRU: a doubly linked list through the entries, most recent at head
    return setmetatable({ conf = conf, on = on, entries = {}, n = 0, head = nil, tail = nil,
                          service = service, wants_access = conf.size > 0 }, mt)
end

local function key_of(ctx)
    return ctx.method .. "\0" .. ctx:args_raw()
end

local function unlink(self, e)
    if e.prev then e.prev.next = e.next else self.head = e.next end
    if e.next then e.next.prev = e.prev else self.tail = e.prev end
    e.prev, e.next = nil, nil
end

local function push_front(self, e)
    e.next = self.head
    if self.head then self.head.prev = e end
    self.head = e
    if not self.tail then self.tail = e end
end

local function store(self, key, bytes, now)
    local e = self.entries[key]
    if e then
        unlink(self, e)
    else
        if self.n >= self.conf.size then
            local old = self.tail
            unlink(self, old)
            self.entries[old.key] = nil
            self.n = self.n - 1
        end
        e = { key = key }
        self.entries[key] = e
        self.n = self.n + 1
    end
    e.bytes, e.expires = bytes, now + self.conf.ttl
    push_front(self, e)
end

local function answer(self, ctx)
    if self.conf.size > 0 then
        local e = self.entries[key_of(ctx)]
        if e and e.expires > self.service.now() then return ctx:respond_raw(e.bytes) end
    end
    if self.conf.value ~= nil then return ctx:respond(self.conf.value) end
end

-- Take the args now: the response phase needs the same key.
function _M:access(ctx)
    if ctx.callback then return end -- nothing to answer for: it never meets recover
    ctx:args_raw()
end

function _M:recover(ctx, code)
    if self.on[code] then answer(self, ctx) end
end

function _M:response(ctx, outcome)
    if outcome.ok then
        if self.conf.size > 0 and outcome.result then
            store(self, key_of(ctx), outcome.result, self.service.now())
        end
        return
    end
    if outcome.kind == "gateway_error" and self.on[outcome.code] then answer(self, ctx) end
end

return _M
