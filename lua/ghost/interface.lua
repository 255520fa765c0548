-- ghost.interface: typed proxies, the typing.Protocol of ghost.
--
--   local Users = ghost.interface{ name = "users", methods = {
--       get_profile = { "id: integer" },
--       search = { "query: string", "limit: integer?" },
--   } }
--   local users = Users:bind(gw)          -- or ghost.interface(decl, gw)
--   users.get_profile(42)                 -- checked, then sent as users.get_profile [42]
--   users.get_profil(42)                  -- error: no method 'get_profil' (did you mean ...?)
--   users.get_profile("42")               -- error: argument 1 (id) must be an integer
--
-- Checks happen before anything is sent: a failed check raises (a programmer error, reported
-- at the caller's line) and sends nothing. Declarations use ghost.types (the same language as
-- the gateway config's `methods`, so a service's declaration can be copied from there or from
-- `ghostgate stubs`).

local types = require "ghost.types"
local proxy = require "ghost.proxy"
local client = require "ghost.client"

local type, pairs, error, rawset, rawequal, select, setmetatable, tostring = type, pairs, error,
    rawset, rawequal, select, setmetatable, tostring
local format, sub, match = string.format, string.sub, string.match
local sort = table.sort

local parse, check_args, suggest = types.parse, types.check_args, types.suggest
local invoke = client.invoke

local _M = {}

local Interface = {}
Interface.__index = Interface

local function checked(view, full, spec, ...)
    local why = check_args(spec, ...)
    if why then error(full .. ": " .. why, 2) end
    return invoke(view, full, ...)
end

local function bind(iface, gw, level)
    local view = proxy.view_of(gw)
    if not view then
        error("ghost.interface: bind expects a proxy from ghost.connect, got " .. type(gw), level)
    end
    local name, specs = iface.name, iface.specs
    local p = {}
    local mt = { __metatable = false, __name = "ghost.interface" }
    function mt.__index(t, k)
        if type(k) ~= "string" or sub(k, 1, 2) == "__" then return nil end
        local spec = specs[k]
        if not spec then
            local s = suggest(k, specs)
            error(format("%s.%s: interface '%s' has no method '%s'%s", name, k, name, k,
                s and format(" (did you mean '%s'?)", s) or ""), 2)
        end
        local full = name .. "." .. k
        local f = function(...)
            local a1 = ...
            if a1 ~= nil and rawequal(a1, p) then return checked(view, full, spec, select(2, ...)) end
            return checked(view, full, spec, ...)
        end
        rawset(t, k, f)
        return f
    end
    function mt.__newindex(_, k)
        error("ghost interfaces are read-only (assigning '" .. tostring(k) .. "')", 2)
    end
    function mt.__tostring()
        return "ghost interface " .. name
    end
    return setmetatable(p, mt)
end

--- Bind the interface to a connection (any proxy of ghost.connect, try style included).
function Interface:bind(gw)
    local p = bind(self, gw, 3) -- not a tail call: level 3 is our caller
    return p
end

--- The declared method names, sorted.
function Interface:methods()
    local out = {}
    for k in pairs(self.specs) do out[#out + 1] = k end
    sort(out)
    return out
end

--- ghost.interface(decl [, gw]): an interface (or, with gw, the checked proxy bound to gw).
function _M.new(decl, gw)
    if type(decl) ~= "table" then error("ghost.interface: declaration table expected", 2) end
    local name, methods = decl.name, decl.methods
    if type(name) ~= "string" or not match(name, "^[%a_][%w_%-]*$") then
        error("ghost.interface: name must be a service name, got " .. tostring(name), 2)
    end
    if type(methods) ~= "table" then error("ghost.interface: methods table expected", 2) end
    local specs = {}
    for k, list in pairs(methods) do
        if type(k) ~= "string" then error("ghost.interface: method names must be strings", 2) end
        local spec, err = parse(list)
        if not spec then error(format("ghost.interface: %s.%s: %s", name, k, err), 2) end
        specs[k] = spec
    end
    local iface = setmetatable({ name = name, specs = specs }, Interface)
    if gw ~= nil then
        local p = bind(iface, gw, 3)
        return p
    end
    return iface
end

return _M
