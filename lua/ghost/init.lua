-- ghost: the Lua client and server library of ghostgate (docs/client.md).
--
--   local ghost = require "ghost"
--   local gw = assert(ghost.connect("tcp://127.0.0.1:7420", { timeout = 5 }))
--   print(gw.users.get_profile(42))           -- users.get_profile [42]
--
-- Works in plain luajit (LUA_PATH for lua/, LUA_CPATH for build/lua/ghost/core.so) and in
-- `ghostgate run script.lua`, where everything is built in. Both run the gateway's C core.

local core = require "ghost.core"
local sched = require "ghost.sched"
local errors = require "ghost.errors"
local client = require "ghost.client"
local server = require "ghost.server"
local interface = require "ghost.interface"
local objects = require "ghost.objects"

local pcall, type, error = pcall, type, error

local _M = { _VERSION = "0.1.0" }

--- ghost.connect(addr, opts) -> gw | nil, err. opts: token, timeout (seconds per call, 30),
-- connect_timeout, try (calls return nil, err), max_message, max_depth, max_values.
_M.connect = client.connect

--- ghost.spawn(fn, ...) -> task: run fn(...) concurrently (it starts now, until it waits).
_M.spawn = sched.spawn
--- ghost.all{fn_or_task, ...} -> { first result of each }: run and await several at once.
_M.all = sched.all
--- ghost.sleep(seconds): wait without blocking other tasks.
_M.sleep = sched.sleep
--- ghost.run(): run until every task has ended and no server serves.
_M.run = sched.run
--- ghost.event(): e:set(), e:wait() (until set), e:is_set() -- to make tasks wait for each other.
_M.event = sched.event
--- ghost.now(): monotonic seconds.
_M.now = core.now

--- ghost.serve(obj, addr, opts): serve a table's public functions (blocks until stopped).
_M.serve = server.serve
--- ghost.listen(obj, addr, opts) -> server: the same without blocking (server:serve()).
_M.listen = server.listen

--- ghost.interface(decl [, gw]): typed, checked proxies.
_M.interface = interface.new

--- ghost.bin(s): s sent as MessagePack bin (plain strings are sent as str). Received bin
-- values are ghost.bin values too: tostring(b) is the bytes, #b the length.
_M.bin = core.bin
_M.is_bin = core.is_bin
--- ghost.map(t): t is sent as a map even when empty (an empty table is sent as an array).
_M.map = core.map
--- ghost.null: MessagePack nil inside arrays and maps (received nils there are ghost.null;
-- ghost.null is sent as nil), so that {1, ghost.null, 3} keeps its length. The same value as
-- cjson.null.
_M.null = core.null

--- ghost.ref(v): the table v is passed by reference (calls reach it remotely), not copied.
-- Functions always go by reference. Returns v.
_M.ref = objects.ref
--- ghost.stats(): { exports = n, imports = n, answers = n, ... } of this process.
_M.stats = objects.stats
--- ghost.promise(obj, "method", ...): the call on a remote object is sent now; returns a
-- promise (p:wait(), p:method(...) pipelined). gw.svc.method:promise(...) for plain methods.
_M.promise = objects.object_promise
--- ghost.ext_types{ object = 64, yours = 65, promise = 66 }: the ext types of references.
_M.ext_types = objects.ext_types
--- ghost.is_remote(v): whether v is a proxy for a remote object.
_M.is_remote = objects.is_remote

--- ghost.error(type, message [, code]): an error object (a handler may raise one).
function _M.error(typ, message, code)
    return errors.new(typ, message, nil, code)
end
_M.is_error = errors.is_error

local function try_results(ok, ...)
    if ok then return ... end
    return nil, (...)
end

--- ghost.try(fn, ...): fn's results, or nil, err when it raises (the nil, err style for any
-- code, e.g. ghost.all).
function _M.try(fn, ...)
    if type(fn) ~= "function" then error("ghost.try: function expected, got " .. type(fn), 2) end
    return try_results(pcall(fn, ...))
end

return _M
