-- calc: an adapter over other services of the gateway, for spec/07-legacy/adapter_spec.lua.
local calc = {}

function calc.add(a, b) return upstream.call("legacy", "add", a, b) end
function calc.echo(...) return upstream.call("demo", "echo", ...) end
function calc.down() return upstream.call("legacy", "http500") end
function calc.private_call() return upstream.call("legacy", "secret") end
function calc.slow(s) return upstream.call("legacy", "slow", s, "late") end
function calc.whoami() return upstream.call("secure", "echo", "hi") end

-- outlives its deadline, then tries to go on
function calc.after(s)
    upstream.call("legacy", "slow", s, "x")
    return upstream.try_call("legacy", "add", 1, 1)
end

function calc.try_fail()
    local r, err = upstream.try_call("legacy", "fail", "nope")
    return { r = r, code = err.code, type = err.type, message = err.message, method = err.method }
end

function calc.sum(n)
    local s = 0
    for i = 1, n do s = s + upstream.call("legacy", "add", i, 0) end
    return s
end

function calc.boom()
    local t = nil
    return t.x
end

function calc.raise_typed() error({ code = 409, type = "conflict", message = "already there" }) end
function calc.bin(b) return { is_bin = is_bin(b), len = #b, back = b } end
-- bin and map as ghost.core has them: bin of a bin is that bin, map() is a new empty map
function calc.rebin(b) return { same = rawequal(bin(b), b), back = bin(b), empty = map() } end
function calc.json(v) return { text = json.encode(v), back = json.decode(json.encode(v)) } end
function calc.decode(s) return { json.decode(s) } end
function calc.same(v) return v end
-- the length of demo.echo's answer to an array of n integers built here
function calc.echo_ints(n)
    local t = {}
    for i = 1, n do t[i] = i end
    return #upstream.call("demo", "echo", t)
end
function calc.nulls() return { null, { a = null }, null } end

function calc.fetch(url, timeout)
    local res, err = http.request { url = url, timeout = timeout }
    if not res then return { code = err.code, type = err.type, message = err.message } end
    return { status = res.status, body = res.body, type = res.headers["content-type"] }
end

function calc.must_fetch(url) return assert(http.request { url = url, timeout = 1 }).status end
function calc.bad_yield() coroutine.yield() end
function calc._hidden() return "hidden" end
calc.nested = { deep = function() return "deep" end }

return calc
