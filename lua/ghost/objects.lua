-- ghost.objects: remote objects, functions passed by reference, distributed GC and promise
-- pipelining between two ghost peers (docs/protocol.md#remote-objects, docs/client.md#remote-
-- objects-and-callbacks).
--
-- One session per connection (a ghost.connect connection or a peer of ghost.serve), named by
-- the connection's serial, which ghost.core hands to the codec with every message it decodes:
--   exports  id -> { value, count, iface }: what this side handed out on the connection, with
--            how many times it was sent (a release carries a count: a reference sent again
--            while a release is in flight keeps the entry alive);
--   imports  id -> proxy, weak: one proxy per remote object; each proxy counts how many times
--            its id arrived and releases that many when collected;
--   answers  msgid -> record: results of calls made with keep (promises), kept for pipelined
--            calls until the caller sends $finish.
-- The codec calls export() for every function and every marked table it encodes, and
-- import() for every ext value it decodes (GG_LUA_OBJ_HOOKS in lua_msgpack.h).
--
-- A proxy's finalizer only queues its release; queued releases and finishes go out once per
-- loop turn (sched's before_run hook), as one $release and one $finish per connection.

local core = require "ghost.core"
local sched = require "ghost.sched"
local errors = require "ghost.errors"

local type, pairs, ipairs, next, error, tostring, setmetatable, getmetatable, rawequal, rawset,
    rawget, select, unpack, xpcall, newproxy, pcall = type, pairs, ipairs, next, error, tostring,
    setmetatable, getmetatable, rawequal, rawset, rawget, select, unpack, xpcall, newproxy, pcall
local byte, format = string.byte, string.format
local sort = table.sort

local core_pack, core_unpack, null = core.pack, core.unpack, core.null
local current, wait, go, on_error, last_traceback = sched.current, sched.wait, sched.go,
    sched.on_error, sched.last_traceback
local EV_RESPONSE, EV_FAIL = sched.EV_RESPONSE, sched.EV_FAIL
local new_error, from_remote = errors.new, errors.from_remote

local _M = {}

local EXT = { object = core.EXT_OBJECT, yours = core.EXT_YOURS, promise = core.EXT_PROMISE }
_M.EXT = EXT

--- ghost.ext_types{ object = n, yours = n, promise = n }: the ext type numbers of this
-- process (defaults 64, 65, 66 from ghost.core); both peers must use the same. Returns the
-- numbers in use. Set it before connecting or serving.
function _M.ext_types(t)
    if t == nil then return { object = EXT.object, yours = EXT.yours, promise = EXT.promise } end
    if type(t) ~= "table" then error("ghost.ext_types: table expected, got " .. type(t), 2) end
    local new, seen = {}, {}
    for _, k in ipairs({ "object", "yours", "promise" }) do
        local v = t[k] == nil and EXT[k] or t[k]
        if type(v) ~= "number" or v ~= math.floor(v) or v < -128 or v > 127 then
            error(format("ghost.ext_types: %s must be an integer from -128 to 127", k), 2)
        end
        if v >= 0 and v <= 2 then
            error(format("ghost.ext_types: %s: ext types 0-2 are reserved (neovim's handles)", k), 2)
        end
        if seen[v] then error(format("ghost.ext_types: %d is used twice", v), 2) end
        seen[v], new[k] = true, v
    end
    for k, v in pairs(new) do EXT[k] = v end
    return _M.ext_types()
end
local DEFAULT_TIMEOUT_MS = 30000
local MAX_ARGS = 7000
local MAX_IFACE = 256 -- methods listed in an interface
-- Errors a peer can make us raise are remote errors: their code and type come from this table.
local codes = errors.codes
local CODE_GONE = codes.object_gone

-- The private fields of proxies and promises, under keys no name can reach.
local ID, SESS, IFACE, BOX, MSGID, PROM = {}, {}, {}, {}, {}, {}

local hooks = { marks = setmetatable({}, { __mode = "k" }) }
local marks = hooks.marks
local sessions = {}                                -- serial -> session
local by_conn = setmetatable({}, { __mode = "k" }) -- conn userdata -> session
local stats = { exports = 0, imports = 0, answers = 0, released = 0, bad_releases = 0 }
local dirty = {}                                   -- sessions with releases/finishes queued

-- What the codec is encoding for: the connection a request, notification or reply goes to.
-- Set just before the write and cleared after; export() reads it.
local cur = { conn = nil }
_M.cur = cur

local function gone(s, what)
    return new_error("object_gone", format("%s: %s", what, s.why or "the connection closed"),
        nil, CODE_GONE)
end

---------------------------------------------------------------------------------------------
-- Sessions

local owner -- the table that receives requests and closes of client connections (below)

local function session(serial)
    local s = sessions[serial]
    if not s then
        s = { serial = serial, exports = {}, export_ids = {}, next_id = 0,
            imports = setmetatable({}, { __mode = "v" }), answers = {}, releases = {},
            finishes = {}, timeout_ms = DEFAULT_TIMEOUT_MS }
        sessions[serial] = s
    end
    return s
end

local function bind(conn)
    local s = by_conn[conn]
    if s then return s end
    local serial = conn:serial()
    if not serial then return nil end
    s = session(serial)
    s.conn = conn
    by_conn[conn] = s
    return s
end
_M.bind = bind

-- The connection closed: everything it exported to us is gone, what we exported is released.
local function close_session(s, why)
    if s.dead then return end
    s.dead, s.why = true, why or "the connection closed"
    for _ in pairs(s.exports) do stats.exports = stats.exports - 1 end
    for _ in pairs(s.answers) do stats.answers = stats.answers - 1 end
    s.exports, s.export_ids, s.answers = {}, {}, {}
    s.releases, s.finishes = {}, {}
    sessions[s.serial] = nil
end

--- Called by ghost.serve when a peer closes, and for client connections that serve.
function _M.closed(conn)
    local s = by_conn[conn]
    if s then close_session(s, "the connection closed") end
end

---------------------------------------------------------------------------------------------
-- Exporting (the codec's export hook)

local function is_method_name(k)
    return type(k) == "string" and k ~= "" and byte(k, 1) ~= 95 -- "_"
end

-- The interface of a local object: its public methods, own and inherited through __index
-- tables (4 levels), sorted. A function's interface is { "" }: calling it is method "".
local function interface_of(v)
    if type(v) == "function" then return { "" } end
    local seen, list, t = {}, {}, v
    for _ = 1, 4 do
        if type(t) ~= "table" then break end
        for k, f in pairs(t) do
            if type(f) == "function" and is_method_name(k) and not seen[k] then
                seen[k] = true
                list[#list + 1] = k
            end
        end
        local mt = getmetatable(t)
        t = type(mt) == "table" and mt.__index or nil
    end
    sort(list)
    if #list > MAX_IFACE then
        error(format("an object with more than %d methods cannot be passed", MAX_IFACE), 0)
    end
    return list, seen
end

local function set_of(list)
    local set = {}
    for i = 1, #list do set[list[i]] = true end
    return set
end

local proxy_mt, promise_mt -- below

-- Their metatables are protected (__metatable), so they are told apart by their private keys.
local function is_proxy(v)
    return type(v) == "table" and rawget(v, ID) ~= nil
end

local function is_promise(v)
    return type(v) == "table" and rawget(v, MSGID) ~= nil
end

function hooks.export(v)
    local conn = cur.conn
    if not conn then
        error("cannot encode a " .. type(v) ..
            " here (only arguments and results of calls go by reference)", 0)
    end
    local s = bind(conn)
    if not s or s.dead then error("the connection is closed", 0) end
    if is_proxy(v) then
        if v[SESS] ~= s then error("an object of another connection cannot be passed on", 0) end
        return EXT.yours, core_pack(v[ID])
    elseif is_promise(v) then
        if v[SESS] ~= s then error("a promise of another connection cannot be passed on", 0) end
        return EXT.promise, core_pack({ v[MSGID], {} })
    end
    if s.client and not s.serving then
        -- The peer may call back from now on: requests on this client connection are served.
        conn:serve(owner)
        s.serving = true
    end
    local id = s.export_ids[v]
    local e
    if id then
        e = s.exports[id]
        e.count = e.count + 1
    else
        local iface, set = interface_of(v)
        id = s.next_id + 1
        s.next_id = id
        e = { value = v, count = 1, iface = iface, set = set or set_of(iface) }
        s.exports[id], s.export_ids[v] = e, id
        stats.exports = stats.exports + 1
    end
    return EXT.object, core_pack({ id, e.iface })
end

---------------------------------------------------------------------------------------------
-- Proxies (the codec's import hook)

-- A release queued by a finalizer: counted now, sent by flush() at the next loop turn.
local function queue_release(s, id, box)
    stats.imports = stats.imports - 1
    if s.dead then return end
    s.releases[id] = (s.releases[id] or 0) + box.n
    dirty[s] = true
end

local function new_proxy(s, id, iface)
    local box = { n = 1 }
    local anchor = newproxy(true)
    getmetatable(anchor).__gc = function() queue_release(s, id, box) end
    local p = setmetatable({ [ID] = id, [SESS] = s, [IFACE] = set_of(iface), [BOX] = box,
        [anchor] = true }, proxy_mt)
    marks[p] = true
    s.imports[id] = p
    stats.imports = stats.imports + 1
    return p
end

local promise_ref_mt = { __name = "ghost.promise_ref" }

function hooks.import(t, data, origin)
    if t ~= EXT.object and t ~= EXT.yours and t ~= EXT.promise then return data end
    local s = session(origin)
    local ok, v = pcall(core_unpack, data)
    if t == EXT.object then
        if not ok or type(v) ~= "table" or type(v[1]) ~= "number" or type(v[2]) ~= "table" then
            return new_error("bad_request", "malformed object reference", nil, codes.bad_request)
        end
        local id = v[1]
        local p = s.imports[id]
        if p then
            p[BOX].n = p[BOX].n + 1
            return p
        end
        local iface = {}
        for i = 1, #v[2] do
            if type(v[2][i]) == "string" then iface[#iface + 1] = v[2][i] end
        end
        return new_proxy(s, id, iface)
    elseif t == EXT.yours then
        local e = ok and type(v) == "number" and s.exports[v]
        if not e then return gone(s, format("no object %s on this connection", tostring(v))) end
        return e.value
    end
    if not ok or type(v) ~= "table" or type(v[1]) ~= "number" then
        return new_error("bad_request", "malformed promise", nil, codes.bad_request)
    end
    return setmetatable({ msgid = v[1], path = type(v[2]) == "table" and v[2] or {}, s = s },
        promise_ref_mt)
end

debug.getregistry()["ghost.objects.hooks"] = hooks

---------------------------------------------------------------------------------------------
-- Calls made by this side on remote objects

local function pack_list(...)
    local n = select("#", ...)
    local t = { ... }
    for i = 1, n do
        if t[i] == nil then t[i] = null end
    end
    return t
end

-- Send `$`-method with params on s's connection and wait for the answer.
local function request(s, what, method, ...)
    if s.dead then error(gone(s, what), 3) end
    local conn = s.conn
    local co, rec = current()
    local w = rec and co or {}
    cur.conn = conn
    local id, kind, msg = conn:request(w, s.timeout_ms, method, ...)
    cur.conn = nil
    if not id then
        if kind == "closed" then error(gone(s, what), 3) end
        if kind == "encode" then error(what .. ": " .. msg, 3) end
        error(new_error(kind, msg, what), 3)
    end
    local k, x, y = wait(rec, w, id)
    if k == EV_RESPONSE then
        if x == nil then return y end
        error(from_remote(x, what), 3)
    elseif k == EV_FAIL then
        if x == "connection_lost" or x == "closed" then error(gone(s, what .. ": " .. y), 3) end
        error(new_error(x, y, what), 3)
    end
    error(new_error("cancelled", "the task was cancelled while waiting for " .. what, what), 0)
end

local function describe(p, method)
    return format("object %d%s", p[ID], method and (":" .. method) or "")
end

local function call(p, method, ...)
    return request(p[SESS], describe(p, method), "$call", p, method, pack_list(...))
end

proxy_mt = { __name = "ghost.object", __metatable = "ghost.object" }

function proxy_mt.__index(p, k)
    if type(k) == "string" and p[IFACE][k] then
        local function m(a1, ...)
            if rawequal(a1, p) then return call(p, k, ...) end
            return call(p, k, a1, ...)
        end
        rawset(p, k, m)
        return m
    end
    -- An attribute or an item: fetched on each access.
    return request(p[SESS], describe(p) .. "[" .. tostring(k) .. "]", "$get", p, k)
end

function proxy_mt.__call(p, ...)
    return call(p, "", ...)
end

function proxy_mt.__newindex(_, k)
    error("ghost remote objects are read-only (assigning '" .. tostring(k) .. "')", 2)
end

function proxy_mt.__tostring(p)
    local s = p[SESS]
    return format("ghost object %d (%s%s)", p[ID], s.conn and s.conn:address() or "?",
        s.dead and ", gone" or "")
end

--- Whether v is a proxy for a remote object.
_M.is_remote = is_proxy

---------------------------------------------------------------------------------------------
-- Promises: proxy:promise(...) sends the call at once and returns a promise; p:method(...)
-- is sent at once too, targeting the promised result; p:wait() gives the result.

promise_mt = { __name = "ghost.promise", __metatable = "ghost.promise" }
local promise_methods = {}

function promise_methods.wait(p)
    local st = p[PROM]
    if not st.done then st.event:wait() end
    if st.err then error(st.err, 2) end
    return st.value
end

function promise_methods.is_ready(p)
    return p[PROM].done
end

function promise_mt.__index(p, k)
    local m = promise_methods[k]
    if m then return m end
    if type(k) ~= "string" then return nil end
    local function pm(a1, ...)
        local what = format("promise %d:%s", p[MSGID], k)
        if rawequal(a1, p) then return request(p[SESS], what, "$call", p, k, pack_list(...)) end
        return request(p[SESS], what, "$call", p, k, pack_list(a1, ...))
    end
    rawset(p, k, pm)
    return pm
end

local function queue_finish(s, msgid)
    if s.dead then return end
    s.finishes[#s.finishes + 1] = msgid
    dirty[s] = true
end

--- Call `method` (a plain method name when target is nil, or a method of the remote object
-- target) on conn without waiting; returns a promise. view: timeout_ms.
function _M.promise(conn, timeout_ms, target, method, ...)
    local s = bind(conn)
    local st = { done = false, event = sched.event() }
    local function on_answer(kind, _, x, y)
        st.done = true
        if kind == EV_RESPONSE then
            if x == nil then st.value = y else st.err = from_remote(x, method) end
        else
            st.err = new_error(x or "cancelled", y or "", method)
        end
        st.event:set()
    end
    cur.conn = conn
    local id, kind, msg = conn:request(on_answer, timeout_ms or s.timeout_ms, "$call", target,
        method, pack_list(...), true)
    cur.conn = nil
    if not id then
        if kind == "encode" then error(method .. ": " .. msg, 3) end
        error(new_error(kind, msg, method), 3)
    end
    local anchor = newproxy(true)
    getmetatable(anchor).__gc = function() queue_finish(s, id) end
    local p = setmetatable({ [SESS] = s, [MSGID] = id, [PROM] = st, [anchor] = true }, promise_mt)
    marks[p] = true
    return p
end

--- ghost.promise(obj, "method", ...): a promise for a method of a remote object.
function _M.object_promise(p, method, ...)
    if not is_proxy(p) then error("ghost.promise: remote object expected", 2) end
    if type(method) ~= "string" then error("ghost.promise: method name expected", 2) end
    local s = p[SESS]
    if s.dead then error(gone(s, describe(p, method)), 2) end
    return _M.promise(s.conn, nil, p, method, ...)
end

---------------------------------------------------------------------------------------------
-- Releases and finishes, once per loop turn

local function flush()
    for s in pairs(dirty) do
        dirty[s] = nil
        local conn = s.conn
        if not s.dead and conn then
            if next(s.releases) then
                local list = {}
                for id, n in pairs(s.releases) do
                    list[#list + 1] = { id, n }
                    stats.released = stats.released + 1
                end
                s.releases = {}
                conn:notify("$release", list)
            end
            if #s.finishes > 0 then
                conn:notify("$finish", unpack(s.finishes))
                s.finishes = {}
            end
        end
    end
end
_M.flush = flush
sched.before_run(function()
    if next(dirty) then flush() end
end)

---------------------------------------------------------------------------------------------
-- Requests the peer makes on what we exported: $call, $get, $release, $finish

local function reply(peer, msgid, err, res)
    if msgid == nil then return end
    cur.conn = peer
    local ok, kind, msg = peer:reply(msgid, err, res)
    cur.conn = nil
    if not ok and kind ~= "closed" then
        peer:reply(msgid, { code = codes.bad_result, type = "bad_result", message = tostring(msg) }, nil)
    end
    return ok
end

-- The error map of type `typ` (its code from errors.codes) or, with `code`, of that code.
local function wire_error(typ, message, code)
    return { code = code or codes[typ], type = typ, message = message }
end

-- The local object a target names: the value, or nil, error map. Waits for a promised answer.
local function resolve(s, target)
    if errors.is_error(target) then
        return nil, wire_error(target.type, target.message, target.code)
    end
    if getmetatable(target) == promise_ref_mt then
        local a = s.answers[target.msgid]
        if not a then
            return nil, wire_error("object_gone",
                format("no call %s kept for pipelining on this connection", tostring(target.msgid)))
        end
        if not a.done then a.event:wait() end
        if a.err then return nil, a.err end
        local v = a.value
        for i = 1, #target.path do
            if type(v) ~= "table" then break end
            v = v[target.path[i]]
        end
        if type(v) ~= "table" and type(v) ~= "function" then
            return nil, wire_error("bad_request", "the promised result is not an object")
        end
        return v
    end
    if type(target) ~= "table" and type(target) ~= "function" then
        return nil, wire_error("bad_request", "the target of a call must be an object reference")
    end
    if is_proxy(target) then
        return nil, wire_error("bad_request", "the target is an object of the caller, not of this side")
    end
    return target
end

local function check_method(s, obj, method)
    if type(method) ~= "string" then return wire_error("bad_request", "method name must be a string") end
    if method ~= "" and byte(method, 1) == 95 then
        return wire_error("forbidden", format("method '%s' is private", method))
    end
    local id = s.export_ids[obj]
    local set = id and s.exports[id].set
    if not set then
        local _, seen = interface_of(obj)
        set = seen or set_of({ "" })
    end
    if not set[method] then
        return wire_error("no_such_method", format("the object has no method '%s'", method))
    end
end

local function run_call(s, peer, msgid, params, srv)
    local target, method, args, keep = params[1], params[2], params[3], params[4]
    local a
    if keep == true and msgid ~= nil then
        a = { done = false, event = sched.event() }
        if not s.answers[msgid] then stats.answers = stats.answers + 1 end
        s.answers[msgid] = a
    end
    local ok, res, err
    if type(args) ~= "table" then
        err = wire_error("bad_request", "$call params are [target, method, args, keep]")
    elseif #args > MAX_ARGS then
        err = wire_error("bad_request", format("too many args (%d)", #args))
    else
        for i = 1, #args do
            if args[i] == null then args[i] = nil end
        end
        local n = #args
        if target == nil then
            local h = srv and type(method) == "string" and srv.handlers[method]
            if not h then
                err = wire_error("no_such_method", format("no such method '%s'", tostring(method)))
            elseif srv.self_arg ~= nil then
                ok, res = xpcall(h, on_error, srv.self_arg, unpack(args, 1, n))
            else
                ok, res = xpcall(h, on_error, unpack(args, 1, n))
            end
        else
            local obj
            obj, err = resolve(s, target)
            if obj then err = check_method(s, obj, method) end
            if not err then
                if method == "" then
                    ok, res = xpcall(obj, on_error, unpack(args, 1, n))
                else
                    ok, res = xpcall(obj[method], on_error, obj, unpack(args, 1, n))
                end
            end
        end
        if ok == false then err, res = errors.to_wire(res, last_traceback()), nil end
    end
    if err then res = nil end
    reply(peer, msgid, err, res)
    if a then
        a.done, a.value = true, res
        if err then a.err = err end
        a.event:set()
        if s.dead then stats.answers = stats.answers - 1 end
    end
    if srv then srv:object_done() end
end

local function run_get(s, peer, msgid, params, srv)
    local obj, err = resolve(s, params[1])
    local key, res = params[2], nil
    if obj then
        if type(key) == "string" and byte(key, 1) == 95 then
            err = wire_error("forbidden", format("attribute '%s' is private", key))
        elseif type(obj) ~= "table" then
            err = wire_error("bad_request", "a function has no attributes")
        else
            local ok, v = pcall(function() return obj[key] end)
            if ok then res = v else err = wire_error("runtime_error", tostring(v)) end
        end
    end
    reply(peer, msgid, err, res)
    if srv then srv:object_done() end
end

local function on_release(s, params)
    local list = params[1]
    if type(list) ~= "table" then return end
    for i = 1, #list do
        local pair = list[i]
        local id, n = type(pair) == "table" and pair[1], type(pair) == "table" and pair[2]
        local e = type(id) == "number" and s.exports[id]
        if not e or type(n) ~= "number" or n < 1 or n > e.count then
            stats.bad_releases = stats.bad_releases + 1 -- forged, stale or over-released
        else
            e.count = e.count - n
            if e.count == 0 then
                s.exports[id], s.export_ids[e.value] = nil, nil
                stats.exports = stats.exports - 1
            end
        end
    end
end

local function on_finish(s, params, n)
    for i = 1, n do
        local id = params[i]
        if s.answers[id] then
            s.answers[id] = nil
            stats.answers = stats.answers - 1
        end
    end
end

--- A request or notification whose method begins with "$" (srv: the ghost.serve server whose
-- handlers pipelined calls of plain methods reach, or nil). Answers bad requests itself.
function _M.on_request(peer, msgid, method, params, n, srv)
    local s = bind(peer)
    if not s then return end
    if n < 0 then
        return reply(peer, msgid,
            wire_error("bad_request", "undecodable params: " .. tostring(params)))
    end
    if method == "$call" or method == "$get" then
        if msgid == nil then return end
        if srv then srv.inflight = srv.inflight + 1 end -- a stop waits for it (drain)
        go(method == "$call" and run_call or run_get, s, peer, msgid, params, srv)
    elseif method == "$release" then
        on_release(s, params)
    elseif method == "$finish" then
        on_finish(s, params, n)
    else
        reply(peer, msgid, wire_error("no_such_method", format("no such method '%s'", method)))
    end
end

-- Client connections that passed something by reference: the peer's requests come here.
owner = {
    on_request = function(_, peer, msgid, method, params, n)
        if type(method) == "string" and byte(method, 1) == 36 then -- "$"
            return _M.on_request(peer, msgid, method, params, n, nil)
        end
        if msgid ~= nil then
            peer:reply(msgid, wire_error("not_supported",
                "this client serves only calls on objects it passed"), nil)
        end
    end,
    on_closed = function(_, peer) _M.closed(peer) end,
}

--- A client connection: its session (calls made on it by the peer get this timeout too).
function _M.client_session(conn, timeout_ms)
    local s = bind(conn)
    if s then
        s.client = true
        s.timeout_ms = timeout_ms or s.timeout_ms
    end
    return s
end

--- The client connection closed (gw:close(), lost): its objects are gone.
function _M.client_closed(conn, why)
    local s = by_conn[conn]
    if s then close_session(s, why) end
end

--- ghost.ref(v): v (a table or a function) is passed by reference. Returns v.
function _M.ref(v)
    local t = type(v)
    if t ~= "table" and t ~= "function" then
        error("ghost.ref: table or function expected, got " .. t, 2)
    end
    if t == "table" then marks[v] = true end
    return v
end

--- ghost.stats(): what this process holds right now.
function _M.stats()
    local n = 0
    for _ in pairs(sessions) do n = n + 1 end
    return { exports = stats.exports, imports = stats.imports, answers = stats.answers,
        sessions = n, releases_sent = stats.released, bad_releases = stats.bad_releases }
end

return _M
