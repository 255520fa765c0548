-- A backend handing out objects and calling back: the README's files.lua, plus what the specs
-- of remote objects need. `ghostgate run files.lua [LISTEN]`.
local ghost = require "ghost"

local files = {}

function files.open(name)
    if name == "" then error(ghost.error("bad_name", "a file needs a name", 422)) end
    local f = { name = name, lines = {}, _secret = "s3cret" }
    function f:write(s) self.lines[#self.lines + 1] = s; return #self.lines end
    function f:count() return #self.lines end
    function f:slow(s) ghost.sleep(s); return "done" end
    function f:_wipe() self.lines = {} end
    return ghost.ref(f)
end

function files.watch(name, cb)                  -- cb: a function the caller passed
    cb(name, "opened")                          -- called back while the caller waits
    ghost.spawn(function() ghost.sleep(0.1); pcall(cb, name, "later") end)  -- and after
    return true
end

function files.live() return ghost.stats().exports end  -- objects this process still exports
function files.kept() return ghost.stats().answers end  -- answers kept for pipelining

-- cb(n - 1) calls nest again: depth n of callbacks inside calls.
function files.nest(cb, n)
    if n == 0 then return 0 end
    return cb(n - 1) + 1
end

-- Two callbacks at once; the first one called answers last.
function files.race(cb)
    return ghost.all({ function() return cb(0.2, "slow") end, function() return cb(0, "fast") end })
end

-- The same object every time (a reference returned again while its release may be in flight).
local shared = ghost.ref({ hello = function() return "hi" end })
function files.shared() return shared end

-- n distinct objects at once.
function files.many(n)
    local out = {}
    for i = 1, n do out[i] = ghost.ref({ id = function() return i end }) end
    return out
end

-- Call cb, which never answers; what the call ended with is kept for last_error().
local last
function files.hang(cb)
    ghost.spawn(function()
        local ok, err = pcall(cb)
        last = ok and "answered" or { code = err.code, type = err.type }
    end)
    return true
end
function files.last_error() return last end

-- Stored callbacks, called later.
local stored = {}
function files.subscribe(cb) stored[#stored + 1] = cb; return #stored end
function files.publish(v)
    local n = 0
    for _, cb in ipairs(stored) do n = n + cb(v) end
    return n
end

ghost.serve(files, arg[1] or "tcp://127.0.0.1:9002")
