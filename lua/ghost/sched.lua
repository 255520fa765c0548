-- ghost.sched: coroutines on top of ghost.core's event loop.
--
-- Work runs in worker coroutines taken from a pool (ghost.spawn, every request a ghost.serve
-- backend handles). A worker that waits (a call, a sleep, another task) registers itself as the
-- waiter and yields; core.run() later returns the event and the dispatcher resumes it. Code
-- that is not in a worker (the top level of a script, a coroutine of the user's) waits by
-- running the loop itself until its event arrives, resuming the workers whose events arrive
-- meanwhile. No Lua runs inside a libuv callback, so the loop is never re-entered.
--
-- Wake-ups that do not come from the loop (a task finished, a task cancelled, an event set)
-- go through a ready queue drained by the dispatcher, so resumes never nest deeply.

local core = require "ghost.core"
local errors = require "ghost.errors"

local co_create, co_resume, co_yield, co_running = coroutine.create, coroutine.resume,
    coroutine.yield, coroutine.running
local type, setmetatable, getmetatable, select, error, xpcall, unpack, tostring, pairs, next =
    type, setmetatable, getmetatable, select, error, xpcall, unpack, tostring, pairs, next
local traceback = debug.traceback
local io_stderr = io.stderr
local find, sub = string.find, string.sub

local core_run, core_sleep, core_cancel = core.run, core.sleep, core.cancel
local EV_RESPONSE, EV_FAIL, EV_WAKE, EV_CONNECT = core.EV_RESPONSE, core.EV_FAIL, core.EV_WAKE,
    core.EV_CONNECT
local EV_REQUEST, EV_NOTIFY, EV_CLOSED, EV_SIGNAL = core.EV_REQUEST, core.EV_NOTIFY,
    core.EV_CLOSED, core.EV_SIGNAL
local STRIDE = core.EV_STRIDE
-- Kinds made here, not by the core.
local EV_CANCEL, EV_READY = -1, -2

local _M = {
    EV_RESPONSE = EV_RESPONSE, EV_FAIL = EV_FAIL, EV_WAKE = EV_WAKE, EV_CONNECT = EV_CONNECT,
    EV_CANCEL = EV_CANCEL, EV_READY = EV_READY,
}

local WAIT, IDLE = {}, {} -- what workers yield: waiting for an event, or done with their job

local state = setmetatable({}, { __mode = "k" }) -- worker -> { wait_id, task, cancelled, ... }
local pool, npool = {}, 0
local MAX_POOL = 512

local ready, rhead, rtail = {}, 1, 0 -- deferred resumes: co, kind (flat)
local evtabs, depth = {}, 0          -- one events table per nesting level of step()
local live_tasks = 0
local holds = 0                      -- servers serving: ghost.run() waits for them too
local signal_handlers = {}
local unobserved, nunobserved = {}, 0 -- failed tasks nobody waited for (ghost.run reports them)
local MAX_UNOBSERVED = 100
local before_run                      -- hook run before each loop turn (see _M.before_run)

local function cancelled_error()
    return errors.new("cancelled", "the task was cancelled")
end

---------------------------------------------------------------------------------------------
-- Workers

local function worker_main(job, a, b, c, d, e, f, g)
    while true do
        job(a, b, c, d, e, f, g)
        -- An idle worker holds nothing of its last job: a function passed by reference that
        -- a task captured is released once the task ends, not when the worker is reused.
        job, a, b, c, d, e, f, g = nil, nil, nil, nil, nil, nil, nil, nil -- luacheck: ignore 311
        job, a, b, c, d, e, f, g = co_yield(IDLE)
    end
end

local function resume(co, ...)
    local ok, r = co_resume(co, ...)
    if not ok then
        -- Jobs protect themselves (xpcall): this is a bug in ghost, not in user code.
        io_stderr:write("ghost: internal error in a worker: ", tostring(r), "\n",
            traceback(co), "\n")
        return
    end
    if r == IDLE then
        local rec = state[co]
        rec.wait_id, rec.task, rec.cancelled, rec.joining, rec.pending = nil, nil, nil, nil, nil
        if npool < MAX_POOL then
            npool = npool + 1
            pool[npool] = co
        end
    end
end

--- Run job(a, ..., g) in a worker now, until it first waits or ends.
local function go(job, a, b, c, d, e, f, g)
    local co
    if npool > 0 then
        co = pool[npool]
        pool[npool] = nil
        npool = npool - 1
    else
        co = co_create(worker_main)
        state[co] = {}
    end
    resume(co, job, a, b, c, d, e, f, g)
    return co
end
_M.go = go

--- The running worker and its record, or nil (top level, or a coroutine of the user's).
local function current()
    local co = co_running()
    if co then
        local rec = state[co]
        if rec then return co, rec end
    end
    return nil
end
_M.current = current

local function defer(co, kind)
    rtail = rtail + 1
    ready[rtail] = co
    rtail = rtail + 1
    ready[rtail] = kind
end

---------------------------------------------------------------------------------------------
-- The loop

local function wake(w, id, kind, x, y)
    local tw = type(w)
    if tw == "thread" then
        local rec = state[w]
        if rec and rec.wait_id == id then
            rec.wait_id = nil
            resume(w, kind, x, y)
        end
    elseif tw == "table" then
        if w.id == id then
            w.kind, w.x, w.y, w.done = kind, x, y, true
        end
    else
        w(kind, id, x, y)
    end
end

-- Run the loop once (without blocking when nowait, or when resumes are queued) and dispatch
-- what arrived. Returns false when nothing could ever happen again.
local function step(nowait)
    depth = depth + 1
    local ev = evtabs[depth]
    if not ev then
        ev = {}
        evtabs[depth] = ev
    end
    if before_run then before_run() end
    local n, alive = core_run(ev, nowait or rtail >= rhead)
    for i = 1, n * STRIDE, STRIDE do
        local kind = ev[i]
        if kind <= EV_CONNECT then
            wake(ev[i + 1], ev[i + 2], kind, ev[i + 3], ev[i + 4])
        elseif kind == EV_REQUEST or kind == EV_NOTIFY then
            local owner = ev[i + 1]
            owner.on_request(owner, ev[i + 2], ev[i + 3], ev[i + 4], ev[i + 5], ev[i + 6])
        elseif kind == EV_CLOSED then
            local owner = ev[i + 1]
            owner.on_closed(owner, ev[i + 2])
        elseif kind == EV_SIGNAL then
            for h in pairs(signal_handlers) do h(ev[i + 2]) end
        end
        -- Drop the event's values now: a result kept here would keep a remote object's proxy
        -- (and the object on its owner) alive until the next loop turn of this depth.
        for j = i + 1, i + STRIDE - 1 do ev[j] = nil end
    end
    local progress = n > 0 or alive or rtail >= rhead
    while rhead <= rtail do
        local co, kind = ready[rhead], ready[rhead + 1]
        ready[rhead], ready[rhead + 1] = nil, nil
        rhead = rhead + 2
        local rec = state[co]
        if rec and rec.pending == kind then
            rec.pending = nil
            resume(co, kind)
        end
    end
    rhead, rtail = 1, 0
    depth = depth - 1
    return progress
end
_M.step = step

--- fn() runs before each turn of the loop (ghost.objects sends queued releases there).
function _M.before_run(fn)
    before_run = fn
end

local function deadlock(what)
    return "ghost: " .. what .. " can never finish: no call, timer or server is pending"
end

-- Top level: run the loop until w.done.
local function block(w)
    while not w.done do
        if not step() and not w.done then error(deadlock("this wait"), 3) end
    end
    return w.kind, w.x, w.y
end

--- Wait for the event of `id`, registered with waiter (the running worker `rec` belongs to,
-- or the table w). Returns kind, x, y (EV_CANCEL when the task was cancelled).
function _M.wait(rec, w, id)
    if rec then
        if rec.cancelled then
            core_cancel(id)
            return EV_CANCEL
        end
        rec.wait_id = id
        return co_yield(WAIT)
    end
    w.id = id
    return block(w)
end

--- Wait `seconds` (0: let everything that is ready run first).
function _M.sleep(seconds)
    local ms = (seconds or 0) * 1000
    local co, rec = current()
    if rec then
        if rec.cancelled then error(cancelled_error(), 0) end
        rec.wait_id = core_sleep(ms, co)
        if co_yield(WAIT) == EV_CANCEL then error(cancelled_error(), 0) end
        return
    end
    local w = {}
    w.id = core_sleep(ms, w)
    block(w)
end

---------------------------------------------------------------------------------------------
-- Events: wait until set (a task's end, a server's stop)

local Event = {}
Event.__index = Event

function _M.event()
    return setmetatable({ set_ = false }, Event)
end

function Event:set()
    if self.set_ then return end
    self.set_ = true
    local ws = self.waiters
    if ws then
        self.waiters = nil
        for co in pairs(ws) do
            local rec = state[co]
            if rec and rec.joining == self then
                rec.joining = nil
                rec.pending = EV_READY
                defer(co, EV_READY)
            end
        end
    end
end

function Event:is_set()
    return self.set_
end

--- Wait until set. In a worker this yields (and raises the cancelled error if the task is
-- cancelled meanwhile); elsewhere it runs the loop.
function Event:wait()
    if self.set_ then return end
    local co, rec = current()
    if rec then
        if rec.cancelled then error(cancelled_error(), 0) end
        local ws = self.waiters
        if not ws then
            ws = {}
            self.waiters = ws
        end
        ws[co] = true
        rec.joining = self
        if co_yield(WAIT) == EV_CANCEL then error(cancelled_error(), 0) end
        return
    end
    while not self.set_ do
        if not step() and not self.set_ then error(deadlock("this wait"), 3) end
    end
end

---------------------------------------------------------------------------------------------
-- Tasks

local Task = {}
Task.__index = Task
_M.Task = Task

local last_tb -- set by the error handler, read right after xpcall returns (same coroutine)

local function on_error(e)
    local tb = traceback("", 2)
    -- Frames below the job's xpcall are the scheduler's, not the user's.
    local cut = find(tb, "\n%s*%[C%]: in function 'xpcall'")
    if cut then tb = sub(tb, 1, cut - 1) end
    last_tb = errors.clean_traceback(tb)
    return e
end
_M.on_error = on_error
function _M.last_traceback()
    return last_tb
end

local function finish(task, ok, ...)
    if ok then
        task.n = select("#", ...)
        if task.n > 0 then task.results = { ... } end
    else
        task.failed, task.err, task.traceback = true, (...), last_tb
        local e = task.err
        local cancelled = errors.is_error(e) and e.type == "cancelled"
        if not cancelled and not task.done.waiters and nunobserved < MAX_UNOBSERVED then
            nunobserved = nunobserved + 1
            unobserved[nunobserved] = task
        end
    end
    task.co = nil
    live_tasks = live_tasks - 1
    task.done:set()
end

local function run_task(task)
    local co = co_running()
    local rec = state[co]
    rec.task = task
    task.co = co
    if task.nargs > 0 then
        finish(task, xpcall(task.fn, on_error, unpack(task.args, 1, task.nargs)))
    else
        finish(task, xpcall(task.fn, on_error))
    end
end

--- Start fn(...) as a task, running it now until it first waits. Returns the task.
function _M.spawn(fn, ...)
    if type(fn) ~= "function" then
        error("ghost.spawn: function expected, got " .. type(fn), 2)
    end
    local n = select("#", ...)
    local task = setmetatable({ fn = fn, nargs = n, args = n > 0 and { ... } or nil,
        done = _M.event() }, Task)
    live_tasks = live_tasks + 1
    go(run_task, task)
    return task
end

--- Wait for the task; returns what its function returned, or raises what it raised.
function Task:wait()
    self.done:wait()
    self.observed = true
    if self.failed then error(self.err, 0) end
    if self.n > 0 then return unpack(self.results, 1, self.n) end
end

--- true once the task has ended (returned, raised, or was cancelled).
function Task:is_done()
    return self.done.set_
end

--- Like wait(), in the nil, err style: true, results... or false, err.
function Task:result()
    self.done:wait()
    self.observed = true
    if self.failed then return false, self.err end
    if self.n > 0 then return true, unpack(self.results, 1, self.n) end
    return true
end

--- Cancel the task: the call, sleep or wait it is blocked in raises a `cancelled` error in it
-- (the call's late answer is dropped). Returns false when the task has already ended.
function Task:cancel()
    if self.done.set_ then return false end
    local co = self.co
    local rec = co and state[co]
    if not rec then return false end
    if co == co_running() then error(cancelled_error(), 2) end
    rec.cancelled = true
    if rec.wait_id then
        core_cancel(rec.wait_id)
        rec.wait_id = nil
        rec.pending = EV_CANCEL
        defer(co, EV_CANCEL)
    elseif rec.joining then
        local ws = rec.joining.waiters
        if ws then ws[co] = nil end
        rec.joining = nil
        rec.pending = EV_CANCEL
        defer(co, EV_CANCEL)
    end
    -- Otherwise it is running (it resumed us): it raises at its next wait.
    return true
end

--- Results of several tasks or functions (functions are spawned first, so they all run at
-- once). Returns a list of each one's first result; raises the first error (in list order)
-- after all have ended.
function _M.all(list)
    if type(list) ~= "table" then error("ghost.all: list expected, got " .. type(list), 2) end
    local n = #list
    local tasks = {}
    for i = 1, n do
        local t = list[i]
        if type(t) == "function" then
            t = _M.spawn(t)
        elseif getmetatable(t) ~= Task then
            error("ghost.all: element " .. i .. " is neither a function nor a task", 2)
        end
        tasks[i] = t
    end
    local out = {}
    local first_err
    for i = 1, n do
        local t = tasks[i]
        t.done:wait()
        t.observed = true
        if t.failed then
            if first_err == nil then first_err = t.err end
        elseif t.n > 0 then
            out[i] = t.results[1]
        end
    end
    if first_err ~= nil then error(first_err, 0) end
    return out
end

---------------------------------------------------------------------------------------------
-- Running to the end

--- A server is serving (ghost.run waits for it) / has stopped.
function _M.hold()
    holds = holds + 1
end

function _M.release()
    holds = holds - 1
end

--- Run the loop until no task is left and no server is serving. Raises when tasks wait for
-- something that can never come.
function _M.run()
    while live_tasks > 0 or holds > 0 do
        if not step() then
            error(deadlock(live_tasks .. " task(s)"), 2)
        end
    end
    -- A task that failed with nobody waiting for it must not fail silently.
    local list, n = unobserved, nunobserved
    unobserved, nunobserved = {}, 0
    for i = 1, n do
        local t = list[i]
        if not t.observed then
            t.observed = true
            local msg = tostring(t.err)
            if t.traceback then msg = msg .. "\n" .. t.traceback end
            error("ghost: a task failed and nobody waited for it: " .. msg, 0)
        end
    end
end

--- SIGINT and SIGTERM call fn(signum) while it is registered.
function _M.on_signal(fn)
    signal_handlers[fn] = true
    core.signals(true)
end

function _M.off_signal(fn)
    signal_handlers[fn] = nil
    if next(signal_handlers) == nil then core.signals(false) end
end

return _M
