-- ghost.errors: the error objects the Lua client raises (or returns, in try style) and the
-- error maps a ghost.serve backend sends. docs/client.md, "Errors", is the user's version.
--
-- An error object is a table with the metatable below:
--   code       integer: the gateway's codes (docs/protocol.md) or the client's own (below)
--   type       stable snake_case name to match on ("deadline_exceeded", "no_such_method", ...)
--   message    text for people
--   method     the full method name of the call that failed ("users.get_profile")
--   traceback  the remote traceback, when the backend sent one
--   retry_after  seconds to wait before trying again, when the gateway said (429, 503, 530)
--   data       the `error` element exactly as the peer sent it (any shape), for remote errors
-- tostring(err) gives "users.get_profile: 504 deadline_exceeded: ..." plus the remote traceback.

local setmetatable, getmetatable, type, tostring, tonumber = setmetatable, getmetatable, type,
    tostring, tonumber
local format, gsub, sub = string.format, string.gsub, string.sub
local floor = math.floor

local _M = {}

-- Codes of the errors the client makes itself (the gateway's are in docs/protocol.md).
_M.codes = {
    bad_request = 400,
    cancelled = 499,            -- task:cancel() while the call was waiting
    closed = 499,               -- gw:close() was called
    too_large = 413,            -- the request exceeds max_message (not sent)
    no_such_method = 404,
    forbidden = 403,            -- a private method or attribute of a remote object
    object_gone = 410,          -- the remote object is released, unknown, or its connection died
    not_supported = 501,
    runtime_error = 500,        -- a backend handler raised a Lua error
    bad_result = 500,           -- a backend handler returned something MessagePack cannot carry
    connection_failed = 502,    -- cannot connect to the gateway
    connection_lost = 502,      -- the connection died with the call in flight
    bad_response = 502,         -- the peer sent something that is not MessagePack-RPC
    overloaded = 503,
    deadline_exceeded = 504,    -- no answer within the call's timeout
    shutting_down = 531,
}
local codes = _M.codes

local mt = { __name = "ghost.error" }
mt.__index = mt
_M.mt = mt

function mt.__tostring(e)
    local s = format("%s: %s %s: %s", e.method or "ghost", tostring(e.code), tostring(e.type),
        tostring(e.message))
    if e.traceback then
        s = s .. "\nremote " .. gsub(e.traceback, "^\n+", "")
    end
    return s
end

--- A new error object. code defaults to the one of `typ` (500 when unknown).
function _M.new(typ, message, method, code)
    return setmetatable({
        code = code or codes[typ] or 500, type = typ, message = message, method = method,
    }, mt)
end

function _M.is_error(v)
    return getmetatable(v) == mt
end

-- ghost.null (a message sent as nil inside the error map), told apart without requiring
-- ghost.core, which would start an event loop in the gateway's Lua state: the only userdata
-- without a metatable that a decoded value holds.
local function is_null(v)
    return type(v) == "userdata" and getmetatable(v) == nil
end

local function is_int(v)
    return type(v) == "number" and v == floor(v)
end

--- The error object for the `error` element of a response (decoded), whatever its shape:
-- a {code, type, message, traceback} map (the gateway's and ghost.serve's), or anything else
-- (another server's string or array), which becomes type "remote_error" with `data` set.
function _M.from_remote(v, method)
    local e
    if type(v) == "table" and getmetatable(v) == nil then
        local msg = v.message
        if type(msg) ~= "string" then msg = msg ~= nil and not is_null(msg) and tostring(msg) or nil end
        e = {
            code = is_int(v.code) and v.code or tonumber(v.code) or 500,
            type = type(v.type) == "string" and v.type or "remote_error",
            message = msg or "the upstream returned an error without a message",
            traceback = type(v.traceback) == "string" and v.traceback or nil,
            retry_after = type(v.retry_after) == "number" and v.retry_after or nil,
        }
    else
        e = { code = 500, type = "remote_error", message = tostring(v) }
    end
    e.method, e.data = method, v
    return setmetatable(e, mt)
end

--- The error map a backend sends for a Lua error value `v` raised by a handler, with the
-- handler's traceback `tb`. Error objects keep their code, type and message (a handler that
-- lets a remote error through passes it on, with both tracebacks); tables with a `type` are
-- taken as {code, type, message}; anything else is a runtime_error.
function _M.to_wire(v, tb)
    if type(v) == "table" then
        local typ = v.type
        if type(typ) == "string" then
            local w = {
                code = is_int(v.code) and v.code or codes[typ] or 500,
                type = typ,
                message = v.message ~= nil and tostring(v.message) or typ,
                traceback = tb,
            }
            if type(v.traceback) == "string" then
                w.traceback = (tb or "") .. "\ncaused by a remote error of " ..
                    tostring(v.method or "a call") .. ":\n" .. v.traceback
            end
            return w
        end
    end
    local msg = tostring(v)
    if getmetatable(v) == nil and type(v) == "table" then msg = "error object: " .. msg end
    return { code = 500, type = "runtime_error", message = msg, traceback = tb }
end

--- debug.traceback() text without its first "stack traceback:" line noise trimmed.
function _M.clean_traceback(tb)
    if sub(tb, 1, 1) == "\n" then tb = sub(tb, 2) end
    return tb
end

return _M
