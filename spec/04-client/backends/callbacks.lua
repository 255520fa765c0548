-- A backend calling back the functions and objects its callers pass, for the specs of
-- callbacks through the gateway. `ghostgate run callbacks.lua [LISTEN]`.
local ghost = require "ghost"

local cbs = {}

function cbs.open(name)
    local f = { name = name, lines = {} }
    function f:write(s) self.lines[#self.lines + 1] = s; return #self.lines end
    function f:count() return #self.lines end
    function f:on(cb) return cb(self.name) end -- a function passed to a method of an object
    return ghost.ref(f)
end

function cbs.watch(name, cb)                    -- the README's files.watch
    cb(name, "opened")                          -- called back while the caller waits
    ghost.spawn(function() ghost.sleep(0.1); cb(name, "later") end)  -- and after
    return true
end

-- cb(n - 1) calls nest again: depth n of callbacks inside calls.
function cbs.nest(cb, n)
    if n == 0 then return 0 end
    return cb(n - 1) + 1
end

-- Two callbacks at once; the first one called answers last.
function cbs.race(cb)
    return ghost.all({ function() return cb(0.2, "slow") end, function() return cb(0, "fast") end })
end

-- n callbacks at once: "ok" or the error code of each.
function cbs.fan(cb, n)
    local fns = {}
    for i = 1, n do
        fns[i] = function()
            local ok, err = pcall(cb, i)
            return ok and "ok" or err.code
        end
    end
    return ghost.all(fns)
end

-- Call cb in a task of its own; what the call ended with is kept for last_error().
local last
function cbs.hang(cb)
    last = nil
    ghost.spawn(function()
        local ok, err = pcall(cb)
        last = ok and "answered" or { code = err.code, type = err.type, message = err.message }
    end)
    return true
end
function cbs.last_error() return last end

-- Stored callbacks, called later (by whoever calls publish).
local stored = {}
function cbs.subscribe(cb) stored[#stored + 1] = cb; return #stored end
function cbs.publish(v)
    local n = 0
    for _, cb in ipairs(stored) do n = n + cb(v) end
    return n
end
function cbs.forget() stored = {}; return true end

-- Objects both ways: cb gets an object of ours and returns one of its own.
function cbs.exchange(cb)
    local f = cbs.open("exchanged")
    local mine = cb(f)
    return mine:hello() .. ":" .. f:count()
end

-- cb(v) in `seconds`, from a task of the backend's own (no call of the client's in flight).
function cbs.later(cb, seconds, v)
    ghost.spawn(function() ghost.sleep(seconds); cb(v) end)
    return true
end

-- obj:name(...) on an object the caller passed: its result, or {code, type, message}.
function cbs.invoke(obj, name, ...)
    local ok, r = pcall(function(...) return obj[name](obj, ...) end, ...)
    if ok then return r end
    return { code = r.code, type = r.type, message = r.message }
end

-- Each stored callback called with v: its result, or {code, type, message}.
function cbs.publish_each(v)
    local out = {}
    for i, cb in ipairs(stored) do
        local ok, r = pcall(cb, v)
        out[i] = ok and r or { code = r.code, type = r.type, message = r.message }
    end
    return out
end

-- Proxies the backend no longer uses are collected (their releases go out this turn).
function cbs.gc()
    collectgarbage()
    collectgarbage()
    return ghost.stats().imports
end

ghost.serve(cbs, arg[1] or "tcp://127.0.0.1:9002")
