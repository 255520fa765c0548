-- ghost.describe: what sys.describe answers, per service of the running gateway:
--   { <service> = { methods = { <method> = { args = { "integer", "string?", ... },
--                                             names = { "id", "fields" } } },   -- names: if declared
--                   upstreams = <number of upstream endpoints> } }
--
-- sys.c calls describe(config) with the running gateway's normalised config (the table
-- ghost.config.normalize returned). The methods listed are the ones the config declares
-- (services.<name>.methods) that the service's guard policies let through (guard:exports).
-- `ghostgate stubs` turns the answer into lua-language-server annotations (ghost.stubs).

local types = require "ghost.types"

local pairs, ipairs, type, pcall, setmetatable = pairs, ipairs, type, pcall, setmetatable
local sort = table.sort
local getregistry = debug.getregistry

local _M = {}

-- The marker metatable ghost.core encodes as a map even when the table is empty.
local function map(t)
    local reg = getregistry()
    local mt = reg["ghost.map"]
    if not mt then
        mt = { __name = "ghost.map" }
        reg["ghost.map"] = mt
    end
    return setmetatable(t, mt)
end

-- The declared names the service's guards export (a guard that fails here hides nothing:
-- describing must not break a gateway).
local function exported(name, svc, names)
    for _, p in ipairs(svc.policies or {}) do
        local mod = type(p) == "table" and p.module
        if p.name == "guard" and type(mod) == "table" and mod.new and mod.exports then
            local ok, out = pcall(function()
                return mod.new(p.conf, { name = name }):exports(names)
            end)
            if ok and type(out) == "table" then names = out end
        end
    end
    return names
end

--- The description of a normalised config (ghost.config.normalize's result).
function _M.describe(config)
    local out = {}
    for name, svc in pairs(config.services or {}) do
        local declared = svc.methods or {}
        local names = {}
        for m in pairs(declared) do names[#names + 1] = m end
        sort(names)
        local methods = {}
        for _, m in ipairs(exported(name, svc, names)) do
            local spec = types.parse(declared[m])
            if spec then
                methods[m] = { args = spec.args, names = spec.named and spec.names or nil }
            end
        end
        out[name] = { methods = map(methods), upstreams = #(svc.upstreams or {}) }
    end
    return map(out)
end

return _M
