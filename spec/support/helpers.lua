-- spec/support/helpers.lua -- the test kit: real processes, real sockets, one luv event loop.
--
-- Every wait runs the loop until a condition holds or a deadline passes (helpers.await); there
-- is no blind sleep. Processes, clients and temp dirs are registered and released by
-- helpers.cleanup(), which every spec file calls from after_each. A gateway that crashed, died
-- without being told to, or did not exit 0 on SIGTERM makes cleanup() raise, so that test fails.
--
-- Environment: GG_BUILD (directory of the binaries, default "build"), GG_SAN=1 (sanitizer
-- build: timeouts scaled, RSS bounds relaxed), GG_TIMEOUT_SCALE (override the scale),
-- GG_WRAPPER (command prefix for ghostgate, e.g. "valgrind -q --error-exitcode=99"),
-- GG_VERBOSE=1 (echo child output to stderr as it arrives).
--
-- API (details at each function):
--   loop       await(cond, timeout), retry(fn, timeout, interval), pause(s), now(), timeout(s)
--   files      bin(name), tmpdir(), write_file, read_file, rss_kb(pid), fd_count(pid)
--   processes  spawn(cmd, args, opts) -> proc: pid, lines, stdout, stderr, wait_line(pattern,
--              timeout, from), output(), tail(n), kill(sig), wait_exit(timeout), stop(timeout);
--              run(cmd, args, opts) -> {code, signal, stdout, stderr, output}
--   servers    start_upstream(opts), start_gateway(config, opts) -> server: addr, host, port,
--              tls, tls_port (the first tls:// listener),
--              unix, addrs, pid, proc, logs(), wait_log(), stop(), kill(), wait_exit();
--              demo_config(up, service, top), setup_demo(opts) -> {up, gw, c},
--              upstream_stats(up), await_upstream_calls(up, n, timeout)
--   client     client(addr, opts) -> c: request(method, params, id), notify(method, params),
--              send_raw(bytes), wait_response(id, timeout), wait_all(ids, timeout),
--              call(method, params, timeout), wait_notification(timeout, seen),
--              wait_closed(timeout), close(); fields responses, order, notifications, closed
--   links      delay_relay(target, delay) -> {addr}: a relay adding `delay` s each way;
--              black_hole() -> {port, addr, held, close()}: a server that never answers
--   ghost      ghost(), ghost_connect(addr, opts) -> gw (closed by cleanup), setup_ghost,
--              start_backend(script, args, opts), run_lua(script, args, opts)
--   misc       mp (spec/support/mp.lua), parse_addr, split, serialize, unused_port,
--              is_error(err, code, type), raised(fn), sanitizer_report(proc), cleanup()
local uv = require "luv"
local mp = require "spec.support.mp"

local assert = assert
local error = error
local ipairs = ipairs
local pairs = pairs
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local unpack = unpack
local concat = table.concat
local insert = table.insert
local sort = table.sort
local format = string.format
local floor = math.floor
local getenv = os.getenv
local io_open = io.open
local io_stderr = io.stderr

local _M = {}

_M.mp = mp
_M.san = getenv("GG_SAN") == "1"
_M.scale = tonumber(getenv("GG_TIMEOUT_SCALE") or "") or (_M.san and 3 or 1)
local verbose = getenv("GG_VERBOSE") == "1"

local procs = {}    -- every spawned process, in start order
local clients = {}  -- every client opened
local ghosts = {}   -- every ghost.connect proxy opened with ghost_connect / setup_ghost
local relays = {}   -- every delay_relay's handles
local tmpdirs = {}

-- A timeout in seconds, scaled for slow (sanitizer) builds.
function _M.timeout(seconds)
    return seconds * _M.scale
end

local function now()
    return uv.hrtime() / 1e9
end
_M.now = now

---------------------------------------------------------------------------------------------
-- The loop

-- Run the event loop until cond() returns a true value or timeout seconds pass.
-- Returns cond's value, or nil, "timeout".
function _M.await(cond, timeout)
    local v = cond()
    if v then
        return v
    end
    timeout = timeout or _M.timeout(5)
    local expired = false
    local timer = uv.new_timer()
    -- This loop's clock moves only while it runs; a test that waited in ghost's loop (another
    -- loop in this process) for seconds left it behind, and a timer set from it would be due
    -- at once: a process given 5 s to exit after SIGTERM was killed a moment later.
    uv.update_time()
    timer:start(floor(timeout * 1000), 0, function()
        expired = true
    end)
    local ok, err
    repeat
        uv.run("once")
        ok, v = pcall(cond)
        if not ok then
            err, v = v, nil
            break
        end
    until v or expired
    timer:stop()
    timer:close()
    if err then
        error(err, 0)
    end
    if v then
        return v
    end
    return nil, "timeout"
end

-- Let time pass while the loop runs. Only for proving that something does NOT happen during an
-- interval, or for the pause between retries; never to wait for an event.
function _M.pause(seconds)
    _M.await(function()
        return false
    end, seconds)
end

-- Call fn() until it returns a true value, pausing interval seconds between tries.
-- Returns fn's values, or nil, "timeout: " .. last error.
function _M.retry(fn, timeout, interval)
    local deadline = now() + (timeout or _M.timeout(5))
    interval = interval or 0.05
    local last
    while true do
        local r = { fn() }
        if r[1] then
            return unpack(r)
        end
        last = r[2]
        if type(last) == "table" then
            last = format("error %s %s: %s", tostring(last.code), tostring(last.type),
                tostring(last.message))
        end
        if now() >= deadline then
            return nil, "timeout: " .. tostring(last)
        end
        _M.pause(interval)
    end
end

---------------------------------------------------------------------------------------------
-- Files

local function abspath(p)
    if p:sub(1, 1) == "/" then
        return p
    end
    return uv.cwd() .. "/" .. p
end

-- Path of a build binary: $GG_BUILD/name (GG_BUILD defaults to "build", relative to the repo).
function _M.bin(name)
    return abspath(getenv("GG_BUILD") or "build") .. "/" .. name
end

-- A fresh private directory, removed by cleanup(). Kept short: it holds unix sockets.
function _M.tmpdir()
    local base = getenv("TMPDIR")
    if not base or base == "" or #base > 60 then
        base = "/tmp"
    end
    local dir = assert(uv.fs_mkdtemp(base .. "/gg-XXXXXX"))
    tmpdirs[#tmpdirs + 1] = dir
    return dir
end

local function rmtree(path)
    local st = uv.fs_lstat(path)
    if not st then
        return
    end
    if st.type == "directory" then
        local req = uv.fs_scandir(path)
        if req then
            while true do
                local name = uv.fs_scandir_next(req)
                if not name then
                    break
                end
                rmtree(path .. "/" .. name)
            end
        end
        uv.fs_rmdir(path)
    else
        uv.fs_unlink(path)
    end
end
_M.rmtree = rmtree

function _M.write_file(path, content)
    local f, err = io_open(path, "wb")
    if not f then
        return nil, err
    end
    f:write(content)
    f:close()
    return path
end

function _M.read_file(path)
    local f, err = io_open(path, "rb")
    if not f then
        return nil, err
    end
    local s = f:read("*a")
    f:close()
    return s
end

-- Resident set size of a process in KiB, from /proc.
function _M.rss_kb(pid)
    local s, err = _M.read_file("/proc/" .. tostring(pid) .. "/status")
    if not s then
        return nil, err
    end
    local kb = s:match("VmRSS:%s*(%d+)%s*kB")
    if not kb then
        return nil, "no VmRSS for pid " .. tostring(pid)
    end
    return tonumber(kb)
end

-- Number of open file descriptors of a process (from /proc).
function _M.fd_count(pid)
    local req, err = uv.fs_scandir("/proc/" .. tostring(pid) .. "/fd")
    if not req then
        return nil, err
    end
    local n = 0
    while uv.fs_scandir_next(req) do
        n = n + 1
    end
    return n
end

---------------------------------------------------------------------------------------------
-- Config serialisation (a Lua table -> the source of a Lua chunk returning it)

local function is_ident(k)
    return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local function serialize(v, indent)
    local t = type(v)
    if t == "string" then
        return format("%q", v)
    elseif t == "number" then
        if v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
            return format("%d", v)
        end
        return format("%.17g", v)
    elseif t == "boolean" then
        return tostring(v)
    elseif t ~= "table" then
        error("cannot serialise a " .. t, 2)
    end
    indent = indent or ""
    local inner = indent .. "  "
    local parts = {}
    local n = #v
    for i = 1, n do
        parts[#parts + 1] = inner .. serialize(v[i], inner)
    end
    local keys = {}
    for k in pairs(v) do
        if not (type(k) == "number" and k >= 1 and k <= n and k == floor(k)) then
            keys[#keys + 1] = k
        end
    end
    sort(keys, function(a, b)
        return tostring(a) < tostring(b)
    end)
    for _, k in ipairs(keys) do
        local key = is_ident(k) and k or "[" .. serialize(k) .. "]"
        parts[#parts + 1] = inner .. key .. " = " .. serialize(v[k], inner)
    end
    if #parts == 0 then
        return "{}"
    end
    return "{\n" .. concat(parts, ",\n") .. ",\n" .. indent .. "}"
end

function _M.serialize(v)
    return serialize(v)
end

---------------------------------------------------------------------------------------------
-- Addresses: "tcp://HOST:PORT", "HOST:PORT", "unix:/path"

function _M.parse_addr(s)
    if type(s) ~= "string" then
        return nil, "address expected, got " .. type(s)
    end
    if s:sub(1, 5) == "unix:" then
        return { kind = "unix", path = s:sub(6), addr = s }
    end
    local tls = s:match("^tls://(.+)$")
    if tls then
        local a, err = _M.parse_addr(tls)
        if not a then return nil, err end
        a.kind, a.addr = "tls", "tls://" .. tls
        return a
    end
    local rest = s:match("^tcp://(.+)$") or s
    local host, port = rest:match("^%[([^%]]+)%]:(%d+)$")
    if not host then
        host, port = rest:match("^([^:]+):(%d+)$")
    end
    if not host then
        return nil, "bad address '" .. s .. "'"
    end
    return { kind = "tcp", host = host, port = tonumber(port), addr = "tcp://" .. rest }
end

local function split(s, sep)
    local out = {}
    for part in (s .. sep):gmatch("(.-)" .. sep) do
        if part ~= "" then
            out[#out + 1] = part
        end
    end
    return out
end
_M.split = split

-- A loopback TCP port nobody listens on right now (bound, read, released).
function _M.unused_port()
    local tcp = uv.new_tcp()
    assert(tcp:bind("127.0.0.1", 0))
    local port = tcp:getsockname().port
    tcp:close()
    uv.run("nowait")
    return port
end

---------------------------------------------------------------------------------------------
-- Processes

local Proc = {}
Proc.__index = Proc

local function basename(p)
    return p:match("([^/]+)$") or p
end

-- Start cmd with args (a list). opts: env (table of extra NAME = value, merged into the
-- current environment), cwd, stdin (string written then closed), name, strict (cleanup checks
-- that the process was alive until told to stop and then exited 0).
-- Returns a process object, or nil, err when it cannot be started (e.g. binary missing).
function _M.spawn(cmd, args, opts)
    opts = opts or {}
    args = args or {}
    local self = setmetatable({
        cmd = cmd, args = args, name = opts.name or basename(cmd), strict = opts.strict,
        lines = {}, stdout = {}, stderr = {}, exited = false, eofs = 0, signalled = false,
    }, Proc)

    local env
    if opts.env then
        local merged = uv.os_environ()
        for k, v in pairs(opts.env) do
            merged[k] = v
        end
        env = {}
        for k, v in pairs(merged) do
            if v ~= false then
                env[#env + 1] = k .. "=" .. tostring(v)
            end
        end
    end

    local stdin, stdout, stderr = uv.new_pipe(false), uv.new_pipe(false), uv.new_pipe(false)
    local handle, pid
    handle, pid = uv.spawn(cmd, {
        args = args, env = env, cwd = opts.cwd, stdio = { stdin, stdout, stderr },
    }, function(code, signal)
        self.exited = true
        self.code = code
        self.signal = signal
        self.exit_time = now()
        if handle and not handle:is_closing() then
            handle:close()
        end
    end)
    if not handle then
        stdin:close()
        stdout:close()
        stderr:close()
        uv.run("nowait")
        return nil, "cannot start " .. cmd .. ": " .. tostring(pid)
    end
    self.pid = pid
    self.handle = handle
    self.start_time = now()

    local function reader(pipe, list, tag)
        local partial = ""
        local function add(line)
            list[#list + 1] = line
            self.lines[#self.lines + 1] = line
            if verbose then
                io_stderr:write(format("[%s %d %s] %s\n", self.name, pid, tag, line))
            end
        end
        return function(err, data)
            if data then
                partial = partial .. data
                local start = 1
                while true do
                    local i = partial:find("\n", start, true)
                    if not i then
                        break
                    end
                    add(partial:sub(start, i - 1))
                    start = i + 1
                end
                partial = partial:sub(start)
            else
                if partial ~= "" then
                    add(partial)
                    partial = ""
                end
                if err then
                    self.read_error = err
                end
                self.eofs = self.eofs + 1
                if not pipe:is_closing() then
                    pipe:close()
                end
            end
        end
    end
    stdout:read_start(reader(stdout, self.stdout, "out"))
    stderr:read_start(reader(stderr, self.stderr, "err"))
    if opts.stdin then
        stdin:write(opts.stdin)
    end
    stdin:shutdown(function()
        if not stdin:is_closing() then
            stdin:close()
        end
    end)

    procs[#procs + 1] = self
    return self
end

function Proc:tail(n)
    n = n or 20
    local from = #self.lines - n + 1
    if from < 1 then
        from = 1
    end
    return concat(self.lines, "\n", from, #self.lines)
end

function Proc:describe_exit()
    return format("%s (pid %d) exited with code=%s signal=%s", self.name, self.pid,
        tostring(self.code), tostring(self.signal))
end

-- Wait for a line on stdout or stderr matching the Lua pattern. Lines already received count.
-- Lines before index `from` are skipped. Returns line, index; or nil, err (timeout, or the
-- process exited first; err holds the last lines of output).
function Proc:wait_line(pattern, timeout, from)
    local i = from or 1
    local found, index
    local ok = _M.await(function()
        while i <= #self.lines do
            if self.lines[i]:find(pattern) then
                found, index = self.lines[i], i
                return true
            end
            i = i + 1
        end
        return self.exited and self.eofs >= 2
    end, timeout or _M.timeout(10))
    if found then
        return found, index
    end
    local why = ok and self:describe_exit() or "timeout"
    return nil, format("%s: no line matching '%s' from %s; last output:\n%s", why, pattern,
        self.name, self:tail())
end

-- All output so far (stdout and stderr interleaved in arrival order), one string.
function Proc:output()
    return concat(self.lines, "\n")
end

-- Send a signal ("sigterm", "sigkill", a number...) by PID. Counts as "told to stop".
function Proc:kill(sig)
    if self.exited then
        return nil, "already exited"
    end
    self.signalled = true
    local ok, err = uv.kill(self.pid, sig or "sigterm")
    if not ok then
        return nil, err
    end
    return true
end

-- Wait until the process exits (and its output is drained). Returns code, signal or nil, err.
function Proc:wait_exit(timeout)
    local ok = _M.await(function()
        return self.exited
    end, timeout or _M.timeout(10))
    if not ok then
        return nil, "timeout waiting for " .. self.name .. " (pid " .. self.pid .. ") to exit"
    end
    _M.await(function()
        return self.eofs >= 2
    end, 1)
    return self.code, self.signal
end

-- SIGTERM, wait up to timeout seconds, then SIGKILL. Returns code, signal.
function Proc:stop(timeout)
    if not self.exited then
        self:kill("sigterm")
        local code = self:wait_exit(timeout or _M.timeout(5))
        if not code then
            self.killed_after_timeout = true
            self:kill("sigkill")
            self:wait_exit(5)
        end
    end
    return self.code, self.signal
end

-- Run a command to completion. Returns {code, signal, stdout, stderr, output} or nil, err.
function _M.run(cmd, args, opts)
    opts = opts or {}
    local p, err = _M.spawn(cmd, args, opts)
    if not p then
        return nil, err
    end
    local code = p:wait_exit(opts.timeout or _M.timeout(10))
    if not code then
        p:stop(1)
        return nil, p.name .. " did not finish in time; output:\n" .. p:tail()
    end
    return {
        code = p.code, signal = p.signal,
        stdout = concat(p.stdout, "\n"), stderr = concat(p.stderr, "\n"), output = p:output(),
        proc = p,
    }
end

---------------------------------------------------------------------------------------------
-- Servers (ghost-upstream, ghostgate)

local Server = {}
Server.__index = Server

function Server:stop(timeout)
    return self.proc:stop(timeout)
end

function Server:kill(sig)
    return self.proc:kill(sig)
end

function Server:wait_exit(timeout)
    return self.proc:wait_exit(timeout)
end

function Server:logs()
    return self.proc:output()
end

function Server:wait_log(pattern, timeout, from)
    return self.proc:wait_line(pattern, timeout, from)
end

function Server:rss_kb()
    return _M.rss_kb(self.pid)
end

local function server(proc, addrs)
    local self = setmetatable({ proc = proc, pid = proc.pid, addrs = {} }, Server)
    for _, s in ipairs(addrs) do
        local a = _M.parse_addr(s)
        if a then
            self.addrs[#self.addrs + 1] = a.addr
            if a.kind == "tcp" and not self.addr then
                self.addr, self.host, self.port = a.addr, a.host, a.port
            elseif a.kind == "unix" and not self.unix then
                self.unix, self.unix_path = a.addr, a.path
            elseif a.kind == "tls" and not self.tls then
                self.tls, self.tls_port = a.addr, a.port
            end
        end
    end
    return self
end

-- Start build/ghost-upstream. opts.listen: an address or a list (default tcp://127.0.0.1:0).
-- Returns a server {addr, host, port, addrs, unix, proc, pid} or nil, err.
function _M.start_upstream(opts)
    opts = opts or {}
    local listen = opts.listen or "tcp://127.0.0.1:0"
    if type(listen) == "string" then
        listen = { listen }
    end
    local args = {}
    for _, a in ipairs(listen) do
        args[#args + 1] = "-l"
        args[#args + 1] = a
    end
    local proc, err = _M.spawn(_M.bin("ghost-upstream"), args, { name = "ghost-upstream", env = opts.env })
    if not proc then
        return nil, err
    end
    local line
    line, err = proc:wait_line("^ready ", opts.timeout or _M.timeout(10))
    if not line then
        proc:stop(1)
        return nil, err
    end
    return server(proc, split(line:match("^ready%s+(%S+)") or "", ","))
end

-- Start build/ghostgate serve with a config: a table (serialised; listen defaults to
-- tcp://127.0.0.1:0 and drain_timeout to 2 when absent) or Lua source (used as is).
-- opts: log_level ("info"), args (extra CLI args), env, timeout.
-- Returns a server {addr (first tcp), host, port, unix (first unix addr), unix_path, addrs,
-- proc, pid, config_path} with :logs(), :wait_log(), :stop(), :kill(), or nil, err.
function _M.start_gateway(config, opts)
    opts = opts or {}
    local source
    if type(config) == "table" then
        local c = {}
        for k, v in pairs(config) do
            c[k] = v
        end
        if c.listen == nil then
            c.listen = "tcp://127.0.0.1:0"
        end
        if c.drain_timeout == nil then
            c.drain_timeout = 2
        end
        source = "return " .. serialize(c) .. "\n"
    elseif type(config) == "string" then
        source = config
    else
        error("start_gateway: config table or string expected, got " .. type(config), 2)
    end
    local dir = _M.tmpdir()
    local path = dir .. "/gateway.lua"
    assert(_M.write_file(path, source))

    local cmd, args = _M.bin("ghostgate"), {}
    local wrapper = getenv("GG_WRAPPER")
    if wrapper and wrapper ~= "" then
        local words = split(wrapper, " ")
        cmd = words[1]
        for i = 2, #words do
            args[#args + 1] = words[i]
        end
        args[#args + 1] = _M.bin("ghostgate")
    end
    for _, a in ipairs({ "serve", "-c", path, "--log-level", opts.log_level or "info" }) do
        args[#args + 1] = a
    end
    for _, a in ipairs(opts.args or {}) do
        args[#args + 1] = a
    end
    local proc, err = _M.spawn(cmd, args, { name = "ghostgate", strict = true, env = opts.env })
    if not proc then
        return nil, err
    end
    local line
    line, err = proc:wait_line("ready listen=", opts.timeout or _M.timeout(10))
    if not line then
        proc:stop(1)
        proc.strict = false
        return nil, err
    end
    local self = server(proc, split(line:match("ready listen=(%S+)") or "", ","))
    self.config_path = path
    self.dir = dir
    self.ready_line = line
    self.logged_pid = tonumber(line:match("pid=(%d+)"))
    return self
end

-- Start a real redis-server (Debian's) on a free loopback port: no persistence, DEBUG allowed
-- from loopback (for fault specs). opts.port reuses a port (a restart after :kill), opts.args
-- adds arguments. Returns {port, url, proc, pid} with :cmd(...) (redis-cli, returns the trimmed
-- output or nil, err), :stop(), :kill(sig); or nil, err. Stopped by PID in cleanup like the rest.
local Redis = {}
Redis.__index = Redis

function Redis:cmd(...)
    local args = { "-h", "127.0.0.1", "-p", tostring(self.port), "--raw" }
    for _, a in ipairs({ ... }) do
        args[#args + 1] = tostring(a)
    end
    local r, err = _M.run("redis-cli", args)
    if not r then
        return nil, err
    end
    if r.code ~= 0 then
        return nil, "redis-cli exited " .. tostring(r.code) .. ": " .. r.output
    end
    return (r.stdout:gsub("%s+$", ""))
end

function Redis:stop(timeout)
    return self.proc:stop(timeout)
end

function Redis:kill(sig)
    local ok, err = self.proc:kill(sig or "sigkill")
    if ok then
        self.proc:wait_exit()
    end
    return ok, err
end

function _M.start_redis(opts)
    opts = opts or {}
    local port = opts.port or _M.unused_port()
    local args = { "--port", tostring(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--enable-debug-command", "local", "--daemonize", "no", "--loglevel", "notice" }
    for _, a in ipairs(opts.args or {}) do
        args[#args + 1] = a
    end
    local proc, err = _M.spawn("redis-server", args, { name = "redis-server" })
    if not proc then
        return nil, err
    end
    local line
    line, err = proc:wait_line("Ready to accept connections", opts.timeout or _M.timeout(10))
    if not line then
        proc:stop(1)
        return nil, err
    end
    local self = { port = port, url = "redis://127.0.0.1:" .. port, proc = proc, pid = proc.pid }
    return setmetatable(self, Redis)
end

-- A gateway config with one service `demo` routed to the upstream server `up` (or to
-- service.upstreams): service fields override the defaults (deadline 10), top-level fields
-- (listen, limits, ...) are added as given.
function _M.demo_config(up, service, top)
    local svc = { deadline = 10 }
    if up then
        svc.upstreams = { up.addr }
    end
    for k, v in pairs(service or {}) do
        svc[k] = v
    end
    local cfg = { services = { demo = svc } }
    for k, v in pairs(top or {}) do
        cfg[k] = v
    end
    return cfg
end

---------------------------------------------------------------------------------------------
-- MessagePack-RPC client

local Client = {}
Client.__index = Client

-- Connect to addr ("tcp://...", "HOST:PORT" or "unix:/path"). Returns a client, or nil, err
-- (e.g. "ECONNREFUSED: connection refused").
-- Fields: responses (by msgid), order (msgids in arrival order), notifications (list of
-- {method, params}), closed, close_reason, protocol_error.
function _M.client(addr, opts)
    opts = opts or {}
    local a, err = _M.parse_addr(addr)
    if not a then
        error(err, 2)
    end
    local handle = a.kind == "unix" and uv.new_pipe(false) or uv.new_tcp()
    local self = setmetatable({
        addr = a.addr, handle = handle, next_id = 0, responses = {}, order = {}, notifications = {},
        unexpected = {}, duplicates = {}, closed = false, chunks = {}, buffered = 0, need = 1,
        bytes_in = 0,
    }, Client)
    local done, cerr = false, nil
    local function on_connect(e)
        done, cerr = true, e
    end
    local ok, e
    if a.kind == "unix" then
        ok, e = handle:connect(a.path, on_connect)
    else
        ok, e = handle:connect(a.host, a.port, on_connect)
    end
    if not ok then
        handle:close()
        return nil, "connect " .. a.addr .. ": " .. tostring(e)
    end
    if not _M.await(function()
        return done
    end, opts.timeout or _M.timeout(5)) then
        handle:close()
        return nil, "connect " .. a.addr .. ": timeout"
    end
    if cerr then
        handle:close()
        return nil, "connect " .. a.addr .. ": " .. tostring(cerr)
    end
    handle:read_start(function(rerr, data)
        if data then
            self:_feed(data)
        else
            self:_closed(rerr or "eof")
        end
    end)
    clients[#clients + 1] = self
    return self
end

function Client:_closed(reason)
    if not self.closed then
        self.closed = true
        self.close_reason = reason
        self.close_time = now()
    end
    if not self.handle:is_closing() then
        self.handle:close()
    end
end

function Client:_message(raw)
    local t, err = mp.decode(raw)
    if type(t) ~= "table" then
        self.protocol_error = "undecodable message from server: " .. tostring(err) .. ": " .. mp.hex(raw)
        return self:_closed(self.protocol_error)
    end
    if t[1] == 1 then
        local els = mp.elements(raw) or {}
        local r = {
            id = t[2], error = t[3], result = t[4], raw = raw, raw_error = els[3],
            raw_result = els[4], time = now(),
        }
        if self.responses[r.id] then
            self.duplicates[#self.duplicates + 1] = r
        else
            self.responses[r.id] = r
        end
        self.order[#self.order + 1] = r.id
    elseif t[1] == 2 then
        self.notifications[#self.notifications + 1] = { method = t[2], params = t[3], raw = raw }
    else
        self.unexpected[#self.unexpected + 1] = raw
    end
end

function Client:_feed(data)
    self.bytes_in = self.bytes_in + #data
    self.chunks[#self.chunks + 1] = data
    self.buffered = self.buffered + #data
    if self.buffered < self.need then
        return
    end
    local buf = concat(self.chunks)
    local pos = 1
    while pos <= #buf and not self.closed do
        local stop, need = mp.frame(buf, pos)
        if stop == nil then
            self.need = need - pos + 1
            break
        elseif stop == false then
            self.protocol_error = "malformed data from server: " .. need
            return self:_closed(self.protocol_error)
        end
        self:_message(buf:sub(pos, stop - 1))
        pos = stop
        self.need = 1
    end
    local rest = buf:sub(pos)
    self.chunks = { rest }
    self.buffered = #rest
end

-- Send bytes as they are. Returns true or nil, err.
function Client:send_raw(bytes)
    if self.closed then
        return nil, "closed: " .. tostring(self.close_reason)
    end
    local ok, err = self.handle:write(bytes)
    if not ok then
        return nil, err
    end
    return true
end

-- Send a request [0, msgid, method, params] (params: a list, default empty; opts.id forces the
-- msgid). Does not wait. Returns the msgid, or nil, err.
function Client:request(method, params, id)
    if id == nil then
        self.next_id = self.next_id + 1
        id = self.next_id
    end
    local ok, err = self:send_raw(mp.encode({ 0, id, method, params or {} }))
    if not ok then
        return nil, err
    end
    return id
end

-- Send a notification [2, method, params]. Returns true or nil, err.
function Client:notify(method, params)
    return self:send_raw(mp.encode({ 2, method, params or {} }))
end

-- Wait for the response to msgid: {id, error, result, raw, raw_error, raw_result, time};
-- or nil, "timeout" / "closed: reason".
function Client:wait_response(id, timeout)
    _M.await(function()
        return self.responses[id] or self.closed
    end, timeout or _M.timeout(5))
    local r = self.responses[id]
    if r then
        return r
    end
    if self.closed then
        return nil, "closed: " .. tostring(self.close_reason)
    end
    return nil, "timeout"
end

-- Wait for all msgids. Returns the list of responses, or nil, err naming how many are missing.
function Client:wait_all(ids, timeout)
    local missing
    _M.await(function()
        missing = 0
        for _, id in ipairs(ids) do
            if not self.responses[id] then
                missing = missing + 1
            end
        end
        return missing == 0 or self.closed
    end, timeout or _M.timeout(10))
    local out = {}
    missing = 0
    for i, id in ipairs(ids) do
        out[i] = self.responses[id]
        if not out[i] then
            missing = missing + 1
        end
    end
    if missing > 0 then
        return nil, format("%d of %d responses missing (%s)", missing, #ids,
            self.closed and ("closed: " .. tostring(self.close_reason)) or "timeout")
    end
    return out
end

-- Request and wait. Returns result, nil on success; nil, error-object (a table, as sent by
-- the server) on an error response; nil, "timeout" / "closed: ..." on transport failure.
function Client:call(method, params, timeout)
    local id, err = self:request(method, params)
    if not id then
        return nil, err
    end
    local r
    r, err = self:wait_response(id, timeout)
    if not r then
        return nil, err
    end
    if r.error ~= nil then
        return nil, r.error
    end
    return r.result, nil
end

-- Wait until a notification arrives (beyond the first `seen`). Returns it or nil, "timeout".
function Client:wait_notification(timeout, seen)
    seen = seen or 0
    local ok = _M.await(function()
        return #self.notifications > seen
    end, timeout or _M.timeout(5))
    if not ok then
        return nil, "timeout"
    end
    return self.notifications[seen + 1]
end

-- Wait until the server closes the connection. Returns true or nil, "timeout".
function Client:wait_closed(timeout)
    local ok = _M.await(function()
        return self.closed
    end, timeout or _M.timeout(5))
    if not ok then
        return nil, "timeout"
    end
    return true
end

function Client:close()
    if not self.closed then
        self.closed = true
        self.close_reason = "closed by client"
    end
    if not self.handle:is_closing() then
        self.handle:close()
    end
end

-- Test fixture: a ghost-upstream, a gateway routing service `demo` to it, and a client of the
-- gateway. opts.service / opts.config: see demo_config. Raises when any part cannot start (a
-- setup failure is a test error). Returns {up, gw, c}.
function _M.setup_demo(opts)
    opts = opts or {}
    local up = assert(_M.start_upstream())
    local gw = assert(_M.start_gateway(_M.demo_config(up, opts.service, opts.config), opts.gateway))
    local c = assert(_M.client(gw.addr or gw.unix))
    return { up = up, gw = gw, c = c }
end

-- Upstream stats() asked directly (not through the gateway): {calls, notifications,
-- connections, accepted}, or nil, err. The direct connection is kept on the server object.
function _M.upstream_stats(up)
    if not up.direct or up.direct.closed then
        local c, err = _M.client(up.addr)
        if not c then
            return nil, err
        end
        up.direct = c
    end
    up.stats_calls = (up.stats_calls or 0) + 1
    local s, err = up.direct:call("stats", {})
    if type(s) ~= "table" then
        return nil, err or "stats() returned " .. tostring(s)
    end
    return s
end

-- Wait until the upstream has received at least n requests other than the stats() calls made
-- by upstream_stats. Returns the stats or nil, err.
function _M.await_upstream_calls(up, n, timeout)
    return _M.retry(function()
        local s, err = _M.upstream_stats(up)
        if not s then
            return nil, err
        end
        local seen = s.calls - up.stats_calls
        if seen >= n then
            return s
        end
        return nil, format("upstream saw %d calls, waiting for %d", seen, n)
    end, timeout or _M.timeout(5), 0.02)
end

---------------------------------------------------------------------------------------------
-- Assertion helpers

-- The error object of a gateway error response must be {code = code, type = type, ...}.
-- Returns true or nil, description.
function _M.is_error(err, code, typ)
    if type(err) ~= "table" then
        return nil, "expected error " .. code .. " " .. typ .. ", got " .. tostring(err)
    end
    if err.code ~= code or err.type ~= typ then
        return nil, format("expected error %d %s, got %s %s: %s", code, typ, tostring(err.code),
            tostring(err.type), tostring(err.message))
    end
    return true
end

-- fn() must raise an error object (a ghost error, as ghost.connect proxies raise). Returns
-- {code, type, message} of it, to compare whole; raises when fn returned or raised a string.
function _M.raised(fn)
    local ok, err = pcall(fn)
    if ok then
        error("expected an error, the call returned", 2)
    end
    if type(err) ~= "table" then
        error("expected an error object, got " .. tostring(err), 2)
    end
    return { err.code, err.type, err.message }
end

local SAN_REPORT = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
    "SUMMARY: UndefinedBehaviorSanitizer" }

-- Sanitizer reports in a process's output, or nil.
function _M.sanitizer_report(proc)
    for _, line in ipairs(proc.lines) do
        for _, pat in ipairs(SAN_REPORT) do
            if line:find(pat, 1, true) then
                return line
            end
        end
    end
end

---------------------------------------------------------------------------------------------
-- Cleanup: call from after_each in every spec file.

-- Close the luv handles in hs that are not closing already.
local function close_handles(hs)
    for _, hd in ipairs(hs) do
        if not hd:is_closing() then
            hd:close()
        end
    end
end

-- Close clients, stop every process still running (upstreams first so nothing is left for
-- a gateway to drain, then gateways), remove temp dirs. Raises if a gateway (strict process)
-- died on its own, did not exit 0 on SIGTERM, or printed a sanitizer report.
function _M.cleanup()
    local problems = {}
    for _, gw in ipairs(ghosts) do
        gw:close()
    end
    ghosts = {}
    for _, c in ipairs(clients) do
        c:close()
    end
    clients = {}
    for _, hs in ipairs(relays) do
        close_handles(hs)
    end
    relays = {}
    for pass = 1, 2 do
        for i = #procs, 1, -1 do
            local p = procs[i]
            if (pass == 1) == not p.strict then
                local mine = {}
                if not p.exited then
                    local was_signalled = p.signalled
                    local code, sig = p:stop()
                    if p.strict and not was_signalled and (code ~= 0 or sig ~= 0) then
                        insert(mine, p:describe_exit() .. " on SIGTERM (expected 0)" ..
                            (p.killed_after_timeout and ", after SIGKILL: it did not exit in time" or ""))
                    end
                elseif p.strict and not p.signalled then
                    insert(mine, p:describe_exit() .. " without being told to stop")
                end
                if p.strict then
                    local report = _M.sanitizer_report(p)
                    if report then
                        insert(mine, p.name .. " (pid " .. p.pid .. "): " .. report)
                    end
                end
                if #mine > 0 then
                    insert(mine, "last output of " .. p.name .. ":\n" .. p:tail(30))
                    insert(problems, concat(mine, "\n"))
                end
            end
        end
    end
    procs = {}
    for _, d in ipairs(tmpdirs) do
        rmtree(d)
    end
    tmpdirs = {}
    uv.run("nowait")
    if #problems > 0 then
        error(concat(problems, "\n"), 0)
    end
end

---------------------------------------------------------------------------------------------
-- A slow link: a TCP relay on 127.0.0.1 to target that delivers every chunk `delay` seconds
-- after it arrived, both ways, in order (real sockets; it runs in this process's loop, so
-- while the kit waits: await, run_lua, wait_exit). An end of stream is passed on as late.
-- Returns {addr = "tcp://127.0.0.1:PORT"}; cleanup() closes it and its connections.

function _M.delay_relay(target, delay)
    local t = assert(_M.parse_addr(target))
    local ms = floor(delay * 1000 + 0.5)
    local listener = uv.new_tcp()
    local hs = { listener }
    relays[#relays + 1] = hs
    assert(listener:bind("127.0.0.1", 0))
    local function later(fn)
        local timer = uv.new_timer()
        hs[#hs + 1] = timer
        timer:start(ms, 0, function()
            timer:close()
            fn()
        end)
    end
    local function pipe(from, to)
        from:read_start(function(err, data)
            later(function()
                if to:is_closing() then
                    return
                end
                if data and not err then
                    to:write(data)
                else
                    to:close()
                    if not from:is_closing() then
                        from:close()
                    end
                end
            end)
        end)
    end
    assert(listener:listen(64, function()
        local down, up = uv.new_tcp(), uv.new_tcp()
        hs[#hs + 1], hs[#hs + 2] = down, up
        listener:accept(down)
        up:connect(t.host, t.port, function(err)
            if err then
                down:close()
                up:close()
                return
            end
            pipe(down, up)
            pipe(up, down)
        end)
    end))
    return { addr = "tcp://127.0.0.1:" .. listener:getsockname().port }
end

-- A black hole: a TCP server on 127.0.0.1 that accepts every connection and reads it, and
-- never writes a byte (an upstream that never answers: a request, a TLS ClientHello). Returns
-- {port, addr = "tcp://127.0.0.1:PORT", held = the connections accepted so far, close()};
-- cleanup() closes what close() did not.
function _M.black_hole()
    local listener = uv.new_tcp()
    local hs = { listener }
    relays[#relays + 1] = hs
    assert(listener:bind("127.0.0.1", 0))
    local self = { held = {} }
    assert(listener:listen(16, function()
        local cl = uv.new_tcp()
        hs[#hs + 1] = cl
        listener:accept(cl)
        self.held[#self.held + 1] = cl
        cl:read_start(function() end)
    end))
    self.port = listener:getsockname().port
    self.addr = "tcp://127.0.0.1:" .. self.port
    function self.close()
        close_handles(hs)
    end
    return self
end

---------------------------------------------------------------------------------------------
-- The Lua client library (require "ghost"): backends and scripts run by ghostgate or luajit

-- LUA_PATH and LUA_CPATH for a plain luajit that finds lua/ghost/*.lua and
-- $GG_BUILD/lua/ghost/core.so (merge into opts.env of spawn/run).
function _M.ghost_env()
    local lua = abspath("lua")
    return {
        LUA_PATH = lua .. "/?.lua;" .. lua .. "/?/init.lua;;",
        LUA_CPATH = _M.bin("lua") .. "/?.so;;",
    }
end

-- `require "ghost"` in this (busted) process, from lua/ and $GG_BUILD/lua/. Returns the module.
function _M.ghost()
    local env = _M.ghost_env()
    if not package.path:find(env.LUA_PATH:sub(1, -3), 1, true) then
        package.path = env.LUA_PATH:sub(1, -2) .. package.path
        package.cpath = env.LUA_CPATH:sub(1, -2) .. package.cpath
    end
    return require "ghost"
end

-- Command and arguments running a Lua script: `$GG_BUILD/ghostgate run script args...`, or
-- plain luajit when opts.luajit (then opts.env gets ghost_env()).
local function lua_command(script, args, opts)
    local env = {}
    for k, v in pairs(opts.env or {}) do
        env[k] = v
    end
    local cmd, argv
    if opts.luajit then
        for k, v in pairs(_M.ghost_env()) do
            if env[k] == nil then
                env[k] = v
            end
        end
        cmd, argv = "luajit", { script }
    else
        cmd, argv = _M.bin("ghostgate"), { "run", script }
    end
    for _, a in ipairs(args or {}) do
        argv[#argv + 1] = a
    end
    return cmd, argv, env
end

-- Start a ghost.serve backend: a Lua script (a path, or source written to a temp file) run by
-- `ghostgate run` (opts.luajit: plain luajit), with args. Waits for the line ghost.serve
-- prints, "ghost.serve: ready listen=ADDR". The process is strict (see spawn): cleanup() fails
-- the test if it died on its own, did not exit 0 on SIGTERM or printed a sanitizer report.
-- Returns a server {addr, proc, pid, methods} with :stop(), :logs(), ..., or nil, err.
function _M.start_backend(script, args, opts)
    opts = opts or {}
    if script:find("\n") then
        script = assert(_M.write_file(_M.tmpdir() .. "/backend.lua", script))
    end
    local cmd, argv, env = lua_command(script, args, opts)
    local proc, err = _M.spawn(cmd, argv, { name = opts.name or "backend", env = env, strict = true })
    if not proc then
        return nil, err
    end
    local line
    line, err = proc:wait_line("ghost%.serve: ready listen=", opts.timeout or _M.timeout(10))
    if not line then
        proc:stop(1)
        proc.strict = false
        return nil, err
    end
    local self = server(proc, { line:match("listen=(%S+)") })
    self.methods = split(line:match("methods=(%S*)") or "", ",")
    return self
end

-- Run a Lua script (path or source) to completion with `ghostgate run` (opts.luajit: plain
-- luajit). Returns {code, signal, stdout, stderr, output, proc} or nil, err (as run()); a
-- sanitizer report in its output is an error too.
function _M.run_lua(script, args, opts)
    opts = opts or {}
    if script:find("\n") then
        script = assert(_M.write_file(_M.tmpdir() .. "/script.lua", script))
    end
    local cmd, argv, env = lua_command(script, args, opts)
    local r, err = _M.run(cmd, argv, { env = env, timeout = opts.timeout, stdin = opts.stdin })
    if r then
        local report = _M.sanitizer_report(r.proc)
        if report then
            return nil, "sanitizer report from " .. script .. ": " .. report .. "\n" .. r.output
        end
    end
    return r, err
end

-- ghost.connect(addr, opts) in this process, with a call timeout of timeout(5) s unless opts
-- names one. Raises when it cannot connect. cleanup() closes the proxy (a second close is
-- harmless), so a spec needs no after_each of its own for it.
function _M.ghost_connect(addr, opts)
    local copts = { timeout = _M.timeout(5) }
    for k, v in pairs(opts or {}) do
        copts[k] = v
    end
    local gw = assert(_M.ghost().connect(addr, copts))
    ghosts[#ghosts + 1] = gw
    return gw
end

-- Test fixture: ghost.serve backends, a gateway routing a service to each, and a ghost.connect()
-- proxy in this process. services: name -> script path, or {script = ..., methods = {...},
-- service fields...}. Each backend runs `ghostgate run SCRIPT tcp://127.0.0.1:0 GATEWAY` (so it
-- can call other services through the gateway). opts: config (top-level gateway fields),
-- connect (ghost.connect options, as ghost_connect). Raises when a part cannot start. Returns
-- {ghost, gw, gateway, backends = {name = server}}; cleanup() closes gw.
function _M.setup_ghost(services, opts)
    opts = opts or {}
    local ghost = _M.ghost()
    local gaddr = "tcp://127.0.0.1:" .. _M.unused_port()
    local backends, svcs = {}, {}
    for name, spec in pairs(services) do
        if type(spec) == "string" then
            spec = { script = spec }
        end
        local b = assert(_M.start_backend(spec.script, { "tcp://127.0.0.1:0", gaddr }, { name = name }))
        backends[name] = b
        local svc = { upstream = b.addr, deadline = 10 }
        for k, v in pairs(spec) do
            if k ~= "script" then
                svc[k] = v
            end
        end
        svcs[name] = svc
    end
    local cfg = { listen = gaddr, services = svcs }
    for k, v in pairs(opts.config or {}) do
        cfg[k] = v
    end
    local gateway = assert(_M.start_gateway(cfg))
    local gw = _M.ghost_connect(gateway.addr, opts.connect)
    return { ghost = ghost, gw = gw, gateway = gateway, backends = backends }
end

return _M
