-- A backend that says who it is and counts what its objects are asked: the specs of references
-- through the gateway use it to see which backend a call reached, and that a refused call
-- reached none. `ghostgate run counted.lua [LISTEN] [NAME]`.
local ghost = require "ghost"

local name = arg[2] or "counted"
local calls = 0 -- method calls on this backend's objects
local made = 0  -- objects handed out

local counted = {}

local function new_object(label)
    made = made + 1
    local o = { label = label, n = 0 }
    function o:whoami() calls = calls + 1; return name end
    function o:inc() calls = calls + 1; self.n = self.n + 1; return self.n end
    function o:get() calls = calls + 1; return self.n end
    function o:slow(s) calls = calls + 1; ghost.sleep(s); return "done" end
    return ghost.ref(o)
end

function counted.new(label) return new_object(label) end

-- n distinct objects at once.
function counted.many(n)
    local out = {}
    for i = 1, n do out[i] = new_object(i) end
    return out
end

-- The same object every time (a reference returned again while its release may be in flight).
local shared
function counted.shared()
    shared = shared or new_object("shared")
    return shared
end

-- What this process saw: its name, object calls, objects made, objects still exported.
function counted.report()
    return { name = name, calls = calls, made = made, exports = ghost.stats().exports }
end

ghost.serve(counted, arg[1] or "tcp://127.0.0.1:0")
