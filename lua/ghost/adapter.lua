-- ghost.adapter: services implemented by a Lua file inside the gateway (`adapter = "x.lua"`),
-- in the style of OpenResty's cosockets. The C side is gateway/upstreams/adapter*.c;
-- docs/legacy.md is the user's version.
--
-- The file runs once per config load with these globals (besides Lua's):
--   upstream.call(service, method, ...)      call any service through the gateway (its
--                                            policies apply); returns the result or raises an
--                                            error object
--   upstream.try_call(service, method, ...)  the same, returning nil, err instead of raising
--   http.request{ method, url, headers, body, timeout }
--                                            -> { status, headers, body } or nil, err
--   json.encode(v), json.decode(s)           the gateway's JSON mapping (docs/legacy.md)
--   bin(s), is_bin(v), map(t)                MessagePack bin and empty-map markers
--   null                                     MessagePack nil inside arrays and maps
--   log.info(fmt, ...) (also debug, warn, error)
--   service                                  the service's name
-- and returns a table: its public functions (names not starting with "_"; nested tables give
-- dotted names) are the service's methods. Each call runs in a new coroutine; upstream.call and
-- http.request yield to the gateway's loop while they wait, so nothing blocks.
--
-- The C driver and this module talk through coroutine.yield: an operation yields
-- (OP_CALL, service, method, n, args...) or (OP_HTTP, method, url, headers, body, timeout) and
-- is resumed with a handle that core.take turns into (R_OK, values...) or an error kind
-- (made inside the coroutine, where a memory error is caught like any other). run() returns
-- DONE, result; FAILED, error map; or GATEWAY_FAILED, code, message (an error of the gateway or
-- of an upstream's transport that the adapter let through: the call fails with the same
-- gateway error, so breakers see it).

local errors = require "ghost.errors"
local consts = require "ghost.consts"
local export = require "ghost.export"

local type, pairs, select, tostring, tonumber, setmetatable, getmetatable, xpcall, error,
    loadstring, setfenv, ipairs = type, pairs, select, tostring, tonumber, setmetatable,
    getmetatable, xpcall, error, loadstring, setfenv, ipairs
local format, upper, find, gsub = string.format, string.upper, string.find, string.gsub
local sort, concat = table.sort, table.concat
local yield, running = coroutine.yield, coroutine.running
local traceback = debug.traceback
local io_open = io.open

local _M = {}

-- core.take, set by load (each adapter has its own state, hence its own copy of this module)
local take

-- The protocol with the C driver: GG_ADAPTER_CONSTS in gateway/lua/lua_consts.h.
local A, codes = consts.adapter, consts.errors
local OP_CALL, OP_HTTP = A.OP_CALL, A.OP_HTTP
local R_OK, R_REMOTE, R_GATEWAY, R_LOCAL = A.R_OK, A.R_REMOTE, A.R_GATEWAY, A.R_LOCAL
local DONE, FAILED, GATEWAY_FAILED = A.DONE, A.FAILED, A.GATEWAY_FAILED
_M.DONE, _M.FAILED, _M.GATEWAY_FAILED = DONE, FAILED, GATEWAY_FAILED

local MAX_NESTING = 4 -- levels of dotted method names

-- The coroutines the C driver runs: upstream.call and http.request may yield only there.
local tasks = setmetatable({}, { __mode = "k" })
-- Error objects that stand for a gateway error (transport, deadline, policy refusal): when an
-- adapter lets one through, the adapter's call fails with that same gateway error.
local gateway_errors = setmetatable({}, { __mode = "k" })

local function in_task(what, level)
    local co = running()
    if not (co and tasks[co]) then
        error(what .. ": only inside an adapter's methods (not while the file loads, not in a "
            .. "coroutine of your own)", level + 1)
    end
end

---------------------------------------------------------------------------------------------
-- upstream.call

local upstream = {}

local function call(service, method, ...)
    if type(service) ~= "string" or type(method) ~= "string" then
        error("upstream.call(service, method, ...): service and method must be strings", 3)
    end
    in_task("upstream.call", 3)
    local kind, a, b, c, d = take(yield(OP_CALL, service, method, select("#", ...), ...))
    if kind == R_OK then return true, a end
    local full = service .. "." .. method
    local err
    if kind == R_REMOTE then
        err = errors.from_remote(a, full)
    else
        err = errors.new(b, c, full, a)
        if d then err.retry_after = d end
        if kind == R_GATEWAY then gateway_errors[err] = true end
    end
    return false, err
end

--- upstream.call(service, method, ...) -> result; raises an error object (code, type, message,
-- method, traceback of a remote error) on failure.
function upstream.call(service, method, ...)
    local ok, v = call(service, method, ...)
    if not ok then error(v, 2) end
    return v
end

--- upstream.try_call(service, method, ...) -> result | nil, err
function upstream.try_call(service, method, ...)
    local ok, v = call(service, method, ...)
    if not ok then return nil, v end
    return v
end

---------------------------------------------------------------------------------------------
-- http.request

local http = {}

local TOKEN = "^[%w!#%$%%&'%*%+%-%.%^_`|~]+$"
local refused_headers = { ["content-length"] = true, ["transfer-encoding"] = true,
                          ["connection"] = true, ["upgrade"] = true }

local function header_list(h)
    local out = {}
    if h == nil then return out end
    if type(h) ~= "table" then error("http.request: headers must be a table", 3) end
    local names = {}
    for k in pairs(h) do
        if type(k) ~= "string" or not find(k, TOKEN) then
            error(format("http.request: bad header name %s", tostring(k)), 3)
        end
        if refused_headers[k:lower()] then
            error(format("http.request: header '%s' is set by the gateway", k), 3)
        end
        names[#names + 1] = k
    end
    sort(names)
    for _, k in ipairs(names) do
        local v = h[k]
        local list = type(v) == "table" and v or { v }
        for _, x in ipairs(list) do
            if type(x) == "number" then x = tostring(x) end
            if type(x) ~= "string" or find(x, "[\r\n%z]") then
                error(format("http.request: bad value for header '%s'", k), 3)
            end
            out[#out + 1] = k
            out[#out + 1] = x
        end
    end
    return out
end

--- http.request{ method = "GET", url = "http://host:port/path?q", headers = {...}, body = "...",
-- timeout = seconds (at most, and by default, what is left of the call's deadline) }
-- -> { status = 200, headers = { ["content-type"] = "..." }, body = "..." }
-- or nil, err (connection failed, invalid response: code 502; timeout: 504). A response with
-- any status is a response: check res.status.
function http.request(req)
    if type(req) ~= "table" then error("http.request: a table { method, url, ... } expected", 2) end
    local method = upper(req.method or "GET")
    if not find(method, "^%u+$") then error("http.request: bad method " .. tostring(req.method), 2) end
    local url = req.url
    if type(url) ~= "string" then error("http.request: url must be a string", 2) end
    local body = req.body
    if body ~= nil and type(body) ~= "string" then error("http.request: body must be a string", 2) end
    local timeout = req.timeout
    if timeout ~= nil and (type(timeout) ~= "number" or timeout <= 0) then
        error("http.request: timeout must be a positive number of seconds", 2)
    end
    local headers = header_list(req.headers)
    in_task("http.request", 2)
    local kind, a, b, c = take(yield(OP_HTTP, method, url, headers, body, timeout))
    if kind == R_OK then return { status = a, headers = b, body = c } end
    local err = errors.new(b, c, method .. " " .. url, a)
    if kind == R_GATEWAY then gateway_errors[err] = true end
    return nil, err
end

---------------------------------------------------------------------------------------------
-- Running calls

-- The handlers of obj: name -> function (same rule as ghost.serve and the guard policy: no
-- name starting with "_", so neither private helpers nor metamethods are reachable).
local function collect(obj)
    return export.public_functions(obj, MAX_NESTING)
end

local function capture(e)
    return { err = e, tb = gsub(traceback("", 2), "^\n", "") }
end

local function is_int(v)
    return type(v) == "number" and v == v and v % 1 == 0
end

-- The error map a call answers for a Lua error the adapter raised.
local function error_map(e, tb)
    if type(e) == "table" and type(e.type) == "string" then
        local m = {
            code = is_int(e.code) and e.code or tonumber(e.code) or codes.internal,
            type = e.type,
            message = e.message ~= nil and tostring(e.message) or e.type,
            traceback = tb,
        }
        if type(e.traceback) == "string" then
            m.traceback = tb .. "\ncaused by a remote error of " .. tostring(e.method or "a call")
                .. ":\n" .. e.traceback
        end
        return m
    end
    local msg = tostring(e)
    if type(e) == "table" and getmetatable(e) == nil then msg = "error object: " .. msg end
    return { code = codes.internal, type = "adapter_error", message = msg, traceback = tb }
end

--- Run one call in the current coroutine (made by the C driver).
function _M.run(mod, method, ...)
    local h = mod.handlers[method]
    if not h then
        return FAILED, { code = errors.codes.no_such_method, type = "no_such_method",
                         message = format("no such method '%s' in service '%s'", method, mod.name) }
    end
    tasks[running()] = true
    local ok, res = xpcall(h, capture, ...)
    if ok then return DONE, res end
    local e = res.err
    if gateway_errors[e] then
        return GATEWAY_FAILED, e.code, format("%s: %s", tostring(e.method), tostring(e.message)),
            e.retry_after
    end
    return FAILED, error_map(e, res.tb)
end

---------------------------------------------------------------------------------------------
-- Loading

local function make_log(core, name)
    local log = {}
    for _, level in ipairs({ "debug", "info", "warn", "error" }) do
        log[level] = function(fmt, ...)
            local msg = select("#", ...) > 0 and format(fmt, ...) or tostring(fmt)
            core.log(level, name, msg)
        end
    end
    return log
end

--- Load the adapter file `path` for service `name`; core holds the C helpers (bin, is_bin, map,
-- log, json_encode, json_decode, take) and null. Returns a module handle { handlers, names, name,
-- file } or nil, "file:line: reason".
function _M.load(path, name, core)
    take = core.take
    local f, err = io_open(path, "rb")
    if not f then return nil, format("cannot read %s", tostring(err)) end
    local src = f:read("*a")
    f:close()
    local chunk
    chunk, err = loadstring(src, "@" .. path)
    if not chunk then return nil, err end
    local env = setmetatable({
        upstream = upstream, http = http, service = name, log = make_log(core, name),
        json = { encode = core.json_encode, decode = core.json_decode },
        bin = core.bin, is_bin = core.is_bin, map = core.map, null = core.null,
    }, { __index = _G })
    setfenv(chunk, env)
    local ok, obj = xpcall(chunk, function(e) return tostring(e) end, name)
    if not ok then return nil, obj end
    if type(obj) ~= "table" then
        return nil, format("%s: an adapter returns a table of functions, got %s", path, type(obj))
    end
    local handlers = collect(obj)
    local names = {}
    for k in pairs(handlers) do names[#names + 1] = k end
    if #names == 0 then return nil, format("%s: the adapter exports no public function", path) end
    sort(names)
    return { handlers = handlers, names = concat(names, ","), name = name, file = path }
end

_M.OP_CALL, _M.OP_HTTP = OP_CALL, OP_HTTP
_M.R_OK, _M.R_REMOTE, _M.R_GATEWAY, _M.R_LOCAL = R_OK, R_REMOTE, R_GATEWAY, R_LOCAL

return _M
