-- ghost.types: the argument declarations of methods, shared by the gateway's config
-- (services.<name>.methods), sys.describe, `ghostgate stubs` and ghost.interface.
--
-- A declaration is a list, one entry per argument:
--   { "integer", "string?", "..." }            types; "?" marks an optional argument
--   { "id: integer", "fields: table?" }         the same with names (used in stubs and errors)
-- Types: integer, number, string, boolean, table, binary (a ghost.bin value), any. Optional
-- arguments come last; "..." (last) allows any further arguments.

local type, ipairs, pairs, tostring, getmetatable, select = type, ipairs, pairs, tostring,
    getmetatable, select
local format, match, sub, byte = string.format, string.match, string.sub, string.byte
local floor, min, huge = math.floor, math.min, math.huge
local concat, sort = table.concat, table.sort

local _M = {}

local TYPES = { integer = true, number = true, string = true, boolean = true, table = true,
    binary = true, any = true }
_M.TYPES = TYPES
local TYPE_LIST = "integer, number, string, boolean, table, binary, any"

--- Parse a declaration list. Returns spec or nil, reason:
-- spec = { n, names = {}, types = {}, optional = {}, min, variadic, args = {normalised entries},
--          named (any name given) }
function _M.parse(list)
    if type(list) ~= "table" then return nil, "expected a list of argument types" end
    local spec = { names = {}, types = {}, optional = {}, args = {}, variadic = false, min = 0,
        named = false }
    local n = #list
    for i = 1, n do
        local e = list[i]
        if type(e) ~= "string" then
            return nil, format("argument %d: expected a type name, got %s", i, type(e))
        end
        if e == "..." then
            if i ~= n then return nil, "\"...\" must be the last entry" end
            spec.variadic = true
            spec.args[i] = "..."
        else
            local name, t = match(e, "^%s*([%a_][%w_]*)%s*:%s*(.-)%s*$")
            if not name then t = match(e, "^%s*(.-)%s*$") end
            local opt = sub(t, -1) == "?"
            if opt then t = sub(t, 1, -2) end
            if not TYPES[t] then
                return nil, format("argument %d: unknown type '%s' (types: %s)", i, t, TYPE_LIST)
            end
            local k = #spec.types + 1
            if not opt and k > 1 and spec.optional[k - 1] then
                return nil, format("argument %d: a required argument cannot follow an optional one", i)
            end
            spec.types[k], spec.optional[k], spec.names[k] = t, opt, name or ("arg" .. k)
            if name then spec.named = true end
            if not opt then spec.min = k end
            spec.args[i] = opt and t .. "?" or t
        end
    end
    spec.n = #spec.types
    return spec
end

--- Does v have type t?
local function is(t, v)
    if t == "any" then return true end
    local tv = type(v)
    if t == "integer" then return tv == "number" and v == floor(v) and v - v == 0 end
    if t == "binary" then return tv == "userdata" and getmetatable(v) == "ghost.bin" end
    return tv == t
end
_M.is = is

--- A short description of a value for error messages: string "42", number 1.5, nil, ...
local function show(v)
    local tv = type(v)
    if tv == "string" then
        if #v > 40 then v = sub(v, 1, 37) .. "..." end
        return format("string %q", v)
    end
    if tv == "number" or tv == "boolean" then return tv .. " " .. tostring(v) end
    if tv == "userdata" and getmetatable(v) == "ghost.bin" then return "binary" end
    return tv
end
_M.show = show

local function article(t)
    local c = byte(t, 1)
    return (c == 97 or c == 101 or c == 105 or c == 111 or c == 117) and "an " .. t or "a " .. t
end

--- Check arguments against a spec. Returns nil when they fit, else the reason.
function _M.check_args(spec, ...)
    local n = select("#", ...)
    if n < spec.min then
        return format("expects at least %d argument%s, got %d", spec.min, spec.min == 1 and "" or "s", n)
    end
    if n > spec.n and not spec.variadic then
        return format("expects at most %d argument%s, got %d", spec.n, spec.n == 1 and "" or "s", n)
    end
    for i = 1, min(n, spec.n) do
        local v = select(i, ...)
        local t = spec.types[i]
        if not (v == nil and spec.optional[i]) and not is(t, v) then
            return format("argument %d (%s) must be %s, got %s", i, spec.names[i], article(t), show(v))
        end
    end
    return nil
end

-- Edit distance, for "did you mean" (names are short; the table is small).
local function distance(a, b)
    local la, lb = #a, #b
    if la == 0 then return lb end
    if lb == 0 then return la end
    local prev, cur = {}, {}
    for j = 0, lb do prev[j] = j end
    for i = 1, la do
        cur[0] = i
        local ca = byte(a, i)
        for j = 1, lb do
            local cost = ca == byte(b, j) and 0 or 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        end
        prev, cur = cur, prev
    end
    return prev[lb]
end
_M.distance = distance

--- The candidate closest to word, when close enough to be a typo; else nil.
function _M.suggest(word, candidates)
    local best, bestd = nil, huge
    local names = {}
    for k in pairs(candidates) do names[#names + 1] = k end
    sort(names)
    for _, c in ipairs(names) do
        local d = distance(word, c)
        if d < bestd then best, bestd = c, d end
    end
    if best and bestd <= floor(#word / 3) + 1 then return best end
    return nil
end

local function check_method_name(k)
    for part in (k .. "."):gmatch("(.-)%.") do
        if not match(part, "^[%a_][%w_]*$") then
            return nil, "method names are identifiers separated by dots"
        end
    end
    return true
end

--- The schema of a service's `methods` option (for ghost.config): method name -> declaration.
_M.methods_schema = {
    type = "map",
    description = "methods the service exposes, with their argument types (sys.describe, stubs)",
    keys = { type = "string", check = check_method_name },
    values = {
        type = "array",
        elements = { type = "string" },
        check = function(list)
            local spec, err = _M.parse(list)
            if not spec then return nil, err end
            return true
        end,
    },
}

--- "fun(id: integer, fields?: table): any" for stubs.
function _M.signature(spec)
    local parts = {}
    for i = 1, spec.n do
        local t = spec.types[i]
        if t == "binary" then t = "ghost.Bin" end
        parts[i] = format("%s%s: %s", spec.names[i], spec.optional[i] and "?" or "", t)
    end
    if spec.variadic then parts[#parts + 1] = "...: any" end
    return "fun(" .. concat(parts, ", ") .. "): any"
end

return _M
