-- spec/support/load.lua -- load and attack generators for the fault specs (spec/05-faults) and the
-- soak (bench/soak.sh), on the same luv loop as spec/support/helpers.lua.
--
--   bench(addr, opts) / bench_start(addr, opts) + bench_wait(proc)
--        build/ghost-bench in load mode (a separate process, closed loop, latency histogram);
--        returns {calls, errors, unanswered, calls_s, p50, p90, p99, p999, max (microseconds),
--        code, line}
--   driver(addr, opts) -> d     Lua-side closed-loop calls that remember every call: d:pump()
--        (call it from await conditions, or use d:run(seconds)), d:stop(), d:drain(timeout),
--        d:stats() -> {sent, answered, ok, unanswered, by_code = {[code] = n}, max_latency,
--        late (answers later than opts.late_after)}
--   garbage(addr, n, opts) -> g  n connections sending hostile bytes, reconnecting when closed:
--        g:stop(); fields opened, closed_by_peer, refused, sent
--   drip(addr, n, opts) -> d     n connections that each send a message one byte every
--        opts.interval seconds: d:wait_closed(timeout); fields closes (times), opened
--   raw(addr) -> r               a bare TCP connection (no reading unless asked): r:write(s),
--        r:queued() (bytes waiting in user space), r.closed
--   cleanup()                    closes every handle opened here (call from after_each)
--   note(fmt, ...)               print a measurement when GG_NOTES=1 (or GG_VERBOSE=1)
--   percentile(list, q), median(list)
local uv = require "luv"
local h = require "spec.support.helpers"
local mp = h.mp

local floor = math.floor
local format = string.format
local concat = table.concat
local sort = table.sort
local random = math.random
local char = string.char
local rep = string.rep

local _M = {}

local handles = {} -- raw handles opened here, closed by cleanup()

local function track(handle)
    handles[#handles + 1] = handle
    return handle
end

function _M.cleanup()
    for _, hd in ipairs(handles) do
        if not hd:is_closing() then
            hd:close()
        end
    end
    handles = {}
    uv.run("nowait")
end

-- A measurement worth reading (GG_NOTES=1 or GG_VERBOSE=1 prints it on stderr).
local notes = os.getenv("GG_NOTES") == "1" or os.getenv("GG_VERBOSE") == "1"
function _M.note(fmt, ...)
    if notes then
        io.stderr:write("# " .. format(fmt, ...) .. "\n")
    end
end

function _M.percentile(list, q)
    if #list == 0 then
        return nil
    end
    local s = {}
    for i, v in ipairs(list) do
        s[i] = v
    end
    sort(s)
    local i = math.ceil(q * #s)
    if i < 1 then
        i = 1
    end
    return s[i]
end

function _M.median(list)
    return _M.percentile(list, 0.5)
end

---------------------------------------------------------------------------------------------
-- ghost-bench

local function bench_args(addr, opts)
    local args = { "-a", addr, "-c", tostring(opts.conns or 4), "-d", tostring(opts.depth or 1),
        "-t", tostring(opts.seconds or 2), "-w", tostring(opts.warmup or 0.2),
        "-s", tostring(opts.size or 64), "-m", opts.method or "demo.echo" }
    return args
end

function _M.bench_start(addr, opts)
    opts = opts or {}
    return h.spawn(h.bin("ghost-bench"), bench_args(addr, opts), { name = "ghost-bench" })
end

-- Parse ghost-bench's result line. Latencies in microseconds.
function _M.bench_parse(line)
    if not line then
        return nil
    end
    local r = { line = line }
    for k, v in line:gmatch("([%w_%./]+)=([%d%.]+)") do
        r[k] = tonumber(v)
    end
    r.calls_s = r["calls/s"]
    r.p999 = r["p99.9"]
    if not r.calls then
        return nil
    end
    return r
end

-- Wait for a ghost-bench started by bench_start; returns the parsed result or nil, err.
function _M.bench_wait(proc, timeout)
    local code = proc:wait_exit(timeout or h.timeout(60))
    if not code then
        proc:stop(1)
        return nil, "ghost-bench did not finish:\n" .. proc:tail()
    end
    local line
    for _, l in ipairs(proc.stdout) do
        if l:match("^calls/s=") then
            line = l
        end
    end
    local r = _M.bench_parse(line)
    if not r then
        return nil, "no result line from ghost-bench (exit " .. tostring(proc.code) .. "):\n" .. proc:tail()
    end
    r.code = proc.code
    r.stderr = concat(proc.stderr, "\n")
    return r
end

function _M.bench(addr, opts)
    local proc, err = _M.bench_start(addr, opts)
    if not proc then
        return nil, err
    end
    return _M.bench_wait(proc, h.timeout((opts and opts.seconds or 2) + 30))
end

---------------------------------------------------------------------------------------------
-- Lua-side driver: every call remembered, per-call latency, errors by code.

local Driver = {}
Driver.__index = Driver

-- opts: conns (4), depth (calls in flight per connection, 8), method ("demo.echo"),
-- params (function(n) -> params list; default { n }), late_after (seconds: answers later than
-- this are counted in stats().late), max_calls (stop sending after this many).
function _M.driver(addr, opts)
    opts = opts or {}
    local self = setmetatable({
        addr = addr, opts = opts, conns = {}, sent = 0, answered = 0, ok = 0, by_code = {},
        max_latency = 0, late = 0, running = true, pending = {}, latencies = {}, lost = 0,
        closed_conns = 0, duplicates = 0, unknown = 0, max_by_code = {}, late_list = {}, methods = {},
    }, Driver)
    for i = 1, opts.conns or 4 do
        local c = assert(h.client(addr))
        self.conns[i] = { c = c, seen = 0, inflight = 0 }
        self.pending[c] = {}
    end
    for _, st in ipairs(self.conns) do
        for _ = 1, opts.depth or 8 do
            self:_send(st)
        end
    end
    return self
end

function Driver:_send(st)
    if not self.running or st.c.closed then
        return
    end
    if self.opts.max_calls and self.sent >= self.opts.max_calls then
        return
    end
    local n = self.sent + 1
    local params = self.opts.params and self.opts.params(n) or { n }
    local id = st.c:request(self.opts.method or "demo.echo", params)
    if not id then
        return
    end
    self.sent = n
    st.inflight = st.inflight + 1
    self.pending[st.c][id] = h.now()
    self.methods[id] = self.opts.method
end

function Driver:pump()
    for _, st in ipairs(self.conns) do
        local c = st.c
        local order = c.order
        while st.seen < #order do
            st.seen = st.seen + 1
            local id = order[st.seen]
            local r = c.responses[id]
            local t0 = self.pending[c][id]
            if t0 and r then
                self.pending[c][id] = nil
                c.responses[id] = nil
                st.inflight = st.inflight - 1
                self.answered = self.answered + 1
                local lat = r.time - t0
                self.latencies[#self.latencies + 1] = lat
                if lat > self.max_latency then
                    self.max_latency = lat
                end
                if self.opts.late_after and lat > self.opts.late_after then
                    self.late = self.late + 1
                    if #self.late_list < 10 then
                        self.late_list[#self.late_list + 1] = {
                            sent = t0, latency = lat, method = self.methods[id],
                            code = r.error == nil and "ok" or (type(r.error) == "table" and r.error.code),
                        }
                    end
                end
                self.methods[id] = nil
                if r.error == nil then
                    self.ok = self.ok + 1
                    if lat > (self.max_by_code.ok or 0) then
                        self.max_by_code.ok = lat
                    end
                else
                    local code = type(r.error) == "table" and r.error.code or tostring(r.error)
                    self.by_code[code] = (self.by_code[code] or 0) + 1
                    if lat > (self.max_by_code[code] or 0) then
                        self.max_by_code[code] = lat
                    end
                end
                self:_send(st)
            else
                self.unknown = self.unknown + 1
            end
        end
        if #c.duplicates > 0 then
            self.duplicates = self.duplicates + #c.duplicates
            c.duplicates = {}
        end
        if st.seen > 10000 then -- keep the client's lists short
            c.order = {}
            st.seen = 0
        end
        if c.closed and not st.counted_closed then
            st.counted_closed = true
            self.closed_conns = self.closed_conns + 1
        end
    end
    return false
end

-- Keep the load going for `seconds`, running the loop.
function Driver:run(seconds)
    local stop = h.now() + seconds
    h.await(function()
        self:pump()
        return h.now() >= stop
    end, seconds + 1)
end

-- Stop sending new calls.
function Driver:stop()
    self.running = false
end

function Driver:unanswered()
    local n = 0
    for _, st in ipairs(self.conns) do
        n = n + st.inflight
    end
    return n
end

-- Stop sending and wait until every call sent has its answer (or timeout).
function Driver:drain(timeout)
    self.running = false
    h.await(function()
        self:pump()
        return self:unanswered() == 0
    end, timeout or h.timeout(10))
    self:pump()
    return self:unanswered() == 0
end

function Driver:stats()
    return {
        sent = self.sent, answered = self.answered, ok = self.ok, unanswered = self:unanswered(),
        by_code = self.by_code, max_by_code = self.max_by_code, max_latency = self.max_latency,
        late = self.late,
        duplicates = self.duplicates, unknown = self.unknown, closed_conns = self.closed_conns,
        late_list = self.late_list,
        p99 = _M.percentile(self.latencies, 0.99), p50 = _M.percentile(self.latencies, 0.5),
    }
end

function _M.describe(s)
    local codes = {}
    for code, n in pairs(s.by_code) do
        codes[#codes + 1] = format("%s=%d(max %.3fs)", tostring(code), n, s.max_by_code[code] or 0)
    end
    sort(codes)
    return format("sent=%d answered=%d ok=%d(max %.3fs) unanswered=%d errors{%s} max_latency=%.3fs late=%d "
        .. "duplicates=%d unknown=%d closed_conns=%d", s.sent, s.answered, s.ok, s.max_by_code.ok or 0,
        s.unanswered,
        concat(codes, " "), s.max_latency, s.late, s.duplicates, s.unknown, s.closed_conns)
end

---------------------------------------------------------------------------------------------
-- Raw connections

local function connect(addr, cb)
    local a = assert(h.parse_addr(addr))
    local tcp = track(uv.new_tcp())
    local ok, err = tcp:connect(a.host, a.port, function(e)
        cb(tcp, e)
    end)
    if not ok then
        tcp:close()
        cb(nil, err)
    end
    return tcp
end

local Raw = {}
Raw.__index = Raw

-- A bare connection; opts.read: read (and count) what the server sends.
function _M.raw(addr, opts)
    opts = opts or {}
    local self = setmetatable({ closed = false, connected = false, bytes_in = 0, written = 0 }, Raw)
    self.tcp = connect(addr, function(_, err)
        if err then
            self.closed, self.error = true, err
            return
        end
        self.connected = true
        if opts.read then
            self:read_start()
        end
    end)
    h.await(function()
        return self.connected or self.closed
    end, h.timeout(5))
    if not self.connected then
        return nil, "connect: " .. tostring(self.error or "timeout")
    end
    return self
end

function Raw:read_start()
    self.tcp:read_start(function(_, data)
        if data then
            self.bytes_in = self.bytes_in + #data
        else
            self.closed, self.close_time = true, h.now()
            if not self.tcp:is_closing() then
                self.tcp:close()
            end
        end
    end)
end

function Raw:write(s)
    if self.closed or self.tcp:is_closing() then
        return nil, "closed"
    end
    local ok, err = self.tcp:write(s, function(e)
        if not e then
            self.written = self.written + #s
        end
    end)
    return ok, err
end

function Raw:queued()
    if self.tcp:is_closing() then
        return 0
    end
    return self.tcp:get_write_queue_size()
end

function Raw:close()
    self.closed = true
    if not self.tcp:is_closing() then
        self.tcp:close()
    end
end

---------------------------------------------------------------------------------------------
-- Garbage: hostile bytes of every kind the gateway must survive.

local function envelope_prefix(id)
    return "\148\0" .. mp.encode(id) .. mp.encode("demo.echo")
end

_M.garbage_kinds = {
    function() -- not MessagePack at all
        return rep("\193", 64)
    end,
    function() -- random bytes
        local t = {}
        for i = 1, 256 do
            t[i] = char(random(0, 255))
        end
        return concat(t)
    end,
    function() -- an array claiming 4 billion entries
        return "\221\255\0\0\0"
    end,
    function() -- a map claiming 4 billion entries
        return "\223\255\0\0\0"
    end,
    function() -- a 4 GiB string inside a request
        return envelope_prefix(1) .. "\145\219\255\255\255\255"
    end,
    function() -- 10,000 levels of nesting
        return envelope_prefix(2) .. rep("\145", 10000) .. "\192"
    end,
    function() -- half a message, never finished (closed by message_timeout)
        return envelope_prefix(3) .. "\145\218\1\0" .. "abc"
    end,
    function() -- an envelope whose msgid cannot be read
        return mp.encode({ 0, "x", "demo.echo", {} })
    end,
    function() -- a response the client has no business sending, then garbage
        return mp.encode({ 1, 5, mp.null, "x" }) .. "\193"
    end,
}

local Garbage = {}
Garbage.__index = Garbage

-- n connections; each sends one garbage message (kinds in turn), and once the server closes it
-- reconnects and sends the next, until g:stop(). opts.reconnect (true): churn connections;
-- opts.pause (seconds between a close and the reconnect, default 0.05).
function _M.garbage(addr, n, opts)
    opts = opts or {}
    local self = setmetatable({ addr = addr, opened = 0, closed_by_peer = 0, refused = 0, sent = 0,
        running = true, live = 0, conns = {} }, Garbage)
    local kinds = _M.garbage_kinds
    local pause = opts.pause or 0.05
    local function start(slot, k)
        if not self.running then
            return
        end
        connect(addr, function(tcp, err)
            if err or not tcp then
                self.refused = self.refused + 1
                if tcp and not tcp:is_closing() then
                    tcp:close()
                end
                local t = track(uv.new_timer())
                t:start(floor(pause * 1000) + 50, 0, function() -- refused: retry a little later
                    t:close()
                    start(slot, k)
                end)
                return
            end
            self.opened = self.opened + 1
            self.live = self.live + 1
            self.conns[slot] = tcp
            tcp:write(kinds[(k - 1) % #kinds + 1]())
            self.sent = self.sent + 1
            tcp:read_start(function(_, data)
                if data then
                    return
                end
                self.closed_by_peer = self.closed_by_peer + 1
                self.live = self.live - 1
                if not tcp:is_closing() then
                    tcp:close()
                end
                if opts.reconnect ~= false and self.running then
                    local t = track(uv.new_timer())
                    t:start(floor(pause * 1000), 0, function()
                        t:close()
                        start(slot, k + 1)
                    end)
                end
            end)
        end)
    end
    for i = 1, n do
        start(i, i)
    end
    return self
end

function Garbage:stop()
    self.running = false
    for _, tcp in pairs(self.conns) do
        if not tcp:is_closing() then
            tcp:close()
        end
    end
    uv.run("nowait")
end

---------------------------------------------------------------------------------------------
-- Drip: slow senders.

local Drip = {}
Drip.__index = Drip

-- n connections, each sending a valid request one byte every opts.interval seconds (the
-- message is long enough never to complete). Records when the server closes each one.
function _M.drip(addr, n, opts)
    opts = opts or {}
    local interval = floor((opts.interval or 1) * 1000)
    local msg = mp.encode({ 0, 1, "demo.echo", { rep("d", 4096) } })
    local self = setmetatable({ opened = 0, failed = 0, closes = {}, n = n, started = {}, conns = {} }, Drip)
    local pending = 0
    local function open(i)
        pending = pending + 1
        connect(addr, function(tcp, err)
            pending = pending - 1
            if err or not tcp then
                self.failed = self.failed + 1
                return
            end
            self.opened = self.opened + 1
            self.conns[i] = tcp
            local pos = 1
            local t0 = h.now()
            self.started[i] = t0
            local timer = track(uv.new_timer())
            local function drip()
                if tcp:is_closing() then
                    return
                end
                tcp:write(msg:sub(pos, pos))
                pos = pos + 1
            end
            drip()
            -- spread the drips over the interval so that they do not all land together
            timer:start(random(1, interval), interval, drip)
            tcp:read_start(function(_, data)
                if data then
                    return
                end
                self.closes[i] = h.now() - t0
                timer:stop()
                if not timer:is_closing() then
                    timer:close()
                end
                if not tcp:is_closing() then
                    tcp:close()
                end
            end)
        end)
    end
    -- connect in waves so the accept backlog is never the bottleneck
    local i = 0
    while i < n do
        local wave = math.min(200, n - i)
        for k = i + 1, i + wave do
            open(k)
        end
        i = i + wave
        h.await(function()
            return pending == 0
        end, h.timeout(10))
    end
    return self
end

function Drip:count_closed()
    local n = 0
    for _ in pairs(self.closes) do
        n = n + 1
    end
    return n
end

function Drip:wait_closed(timeout)
    return h.await(function()
        return self:count_closed() >= self.opened
    end, timeout)
end

function Drip:stop()
    for _, tcp in pairs(self.conns) do
        if not tcp:is_closing() then
            tcp:close()
        end
    end
    uv.run("nowait")
end

return _M
