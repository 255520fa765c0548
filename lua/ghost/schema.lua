-- ghost.schema: declarative option schemas, validated once at load time.
--
-- A schema is a table { type = ..., default = ..., ... }. Types: "string", "number",
-- "integer", "boolean", "record" (fields = { name = schema }), "array" (elements = schema),
-- "map" (keys = schema, values = schema). Extra checks: min, max, one_of, match (Lua pattern),
-- check (function(value) -> true | nil, reason), required, description; for arrays
-- list_hint (what to say when a table that is not a list is given).
-- validate() returns the value with defaults filled in, or nil, "path: reason" and the path of
-- the option at fault (for an unknown option: its own path), to find its line in the file.

local distance = require("ghost.types").distance

local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local concat, sort, format, floor = table.concat, table.sort, string.format, math.floor

local _M = {}

local function describe(v)
    local t = type(v)
    if t == "string" then return format("string %q", v) end
    if t == "number" or t == "boolean" then return t .. " " .. tostring(v) end
    return t
end

local function join(path, key)
    if path == "" then return tostring(key) end
    if type(key) == "number" then return format("%s[%d]", path, key) end
    return path .. "." .. tostring(key)
end

local validate

-- The option name closest to a misspelt one, when it is a plausible typo: at most one edit per
-- four letters (stricter than method names: 'deadlin' is 'deadline', not 'admin').
local function suggest(word, fields)
    local best, bestd = nil, floor(#word / 4) + 1
    local names = {}
    for k in pairs(fields) do names[#names + 1] = k end
    sort(names)
    for _, k in ipairs(names) do
        local d = distance(word, k)
        if d <= bestd and (not best or d < bestd) then best, bestd = k, d end
    end
    return best
end

local function check_scalar(s, v, path)
    local t = s.type
    if t == "integer" then
        if type(v) ~= "number" or v ~= floor(v) then
            return nil, format("%s: expected an integer, got %s", path, describe(v))
        end
    elseif type(v) ~= t then
        return nil, format("%s: expected a %s, got %s", path, t, describe(v))
    end
    if t == "number" and v ~= v then return nil, format("%s: must be a number, got NaN", path) end
    if s.min and v < s.min then return nil, format("%s: must be at least %s", path, s.min) end
    if s.max and v > s.max then return nil, format("%s: must be at most %s", path, s.max) end
    if s.match and not v:match(s.match) then
        return nil, format("%s: %s does not match %s", path, describe(v), s.match_text or s.match)
    end
    if s.one_of then
        for _, o in ipairs(s.one_of) do
            if o == v then return v end
        end
        return nil, format("%s: must be one of %s, got %s", path, concat(s.one_of, ", "), describe(v))
    end
    return v
end

local function check_record(s, v, path)
    if type(v) ~= "table" then
        return nil, format("%s: expected a table, got %s", path, describe(v))
    end
    local fields = s.fields
    local unknown = {}
    for k in pairs(v) do
        if fields[k] == nil then unknown[#unknown + 1] = tostring(k) end
    end
    if #unknown > 0 then
        sort(unknown)
        local near = suggest(unknown[1], fields)
        return nil, format("%s: unknown option '%s'%s", path == "" and "config" or path, unknown[1],
            near and format("; did you mean '%s'?", near) or ""), join(path, unknown[1])
    end
    local out = {}
    for k, fs in pairs(fields) do
        local fv, err, at = validate(fs, v[k], join(path, k))
        if err then return nil, err, at end
        out[k] = fv
    end
    return out
end

local function check_array(s, v, path)
    if type(v) ~= "table" then
        return nil, format("%s: expected a list, got %s", path, describe(v))
    end
    local n = #v
    for k in pairs(v) do
        if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then
            if s.list_hint then return nil, format("%s: %s", path, s.list_hint) end
            return nil, format("%s: expected a list, found key %s", path, describe(k))
        end
    end
    local out = {}
    for i = 1, n do
        local ev, err, at = validate(s.elements, v[i], join(path, i))
        if err then return nil, err, at end
        out[i] = ev
    end
    if s.min_items and n < s.min_items then
        return nil, format("%s: needs at least %d item(s)", path, s.min_items)
    end
    return out
end

local function check_map(s, v, path)
    if type(v) ~= "table" then
        return nil, format("%s: expected a table, got %s", path, describe(v))
    end
    local out = {}
    for k, x in pairs(v) do
        local kv, err, at = validate(s.keys, k, path == "" and tostring(k) or join(path, k))
        if err then return nil, err, at end
        local xv
        xv, err, at = validate(s.values, x, join(path, k))
        if err then return nil, err, at end
        out[kv] = xv
    end
    return out
end

validate = function(s, v, path)
    path = path or ""
    if v == nil then
        if s.default ~= nil then
            v = s.default
            if type(v) == "function" then v = v() end
        elseif s.required then
            return nil, format("%s: is required", path)
        else
            return nil
        end
    end
    local ok, err, at
    local t = s.type
    if t == "record" then
        ok, err, at = check_record(s, v, path)
    elseif t == "array" then
        if s.coerce_single and type(v) ~= "table" then v = { v } end
        ok, err, at = check_array(s, v, path)
    elseif t == "map" then
        ok, err, at = check_map(s, v, path)
    elseif t == "any" then
        ok = v
    elseif t == "string" or t == "number" or t == "integer" or t == "boolean" then
        ok, err = check_scalar(s, v, path)
    else
        error("schema at " .. path .. " has unknown type " .. tostring(t), 2)
    end
    if err then return nil, err, at or path end
    if s.check then
        local good, reason, where = s.check(ok)
        if not good then return nil, format("%s: %s", path, reason), where and join(path, where) or path end
    end
    return ok
end

local function equal(a, b)
    if a == b then return true end
    if type(a) ~= "table" or type(b) ~= "table" then return false end
    for k, v in pairs(a) do
        if not equal(v, b[k]) then return false end
    end
    for k in pairs(b) do
        if a[k] == nil then return false end
    end
    return true
end

--- Deep equality of two validated option values (used to keep policy state across reloads).
_M.equal = equal

--- Validate `value` against `schema`. Returns the value with defaults, or nil, "path: reason"
-- and the path of the option at fault ("services.users.deadline").
function _M.validate(schema, value, path)
    local v, err, at = validate(schema, value, path or "")
    if err then return nil, err, at end
    return v
end

return _M
