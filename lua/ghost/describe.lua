-- ghost.describe: what sys.describe answers, per service of the running gateway:
--   { <service> = { methods = { <method> = { args = { "integer", "string?", ... },
--                                             names = { "id", "fields" } } },   -- names: if declared
--                   upstreams = <number of upstream endpoints>,
--                   interfaces = { <name> = { <method> = { args, names } } },  -- if declared
--                   returns = { <method> = <interface name> } } }               -- if declared
--
-- describe(config) takes the running gateway's normalised config (the table
-- ghost.config.normalize returned). The methods listed are the ones the config declares
-- (services.<name>.methods) that the service's guard policies let through (guard:exports).
-- sys.c asks for_client(config, built, client): the part of that a caller may call, cached
-- per config generation (in `built`, the generation's pipelines) and identity.
-- `ghostgate stubs` turns the answer into lua-language-server annotations (ghost.stubs).

local types = require "ghost.types"
local policy = require "ghost.policy"
local glob = require "policies.glob"

local pairs, ipairs, type, pcall, setmetatable, next = pairs, ipairs, type, pcall, setmetatable, next
local sort = table.sort
local match = string.match
local getregistry = debug.getregistry

local _M = {}

-- Identities whose description is kept per generation; more are described on each call.
local MAX_CACHED_IDENTITIES = 256

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
        local d = { methods = map(methods), upstreams = #(svc.upstreams or {}) }
        if svc.interfaces then
            local ifaces = {}
            for iname, decl in pairs(svc.interfaces) do
                local ms = {}
                for m, args in pairs(decl) do
                    local spec = types.parse(args)
                    if spec then ms[m] = { args = spec.args, names = spec.named and spec.names or nil } end
                end
                ifaces[iname] = map(ms)
            end
            d.interfaces = map(ifaces)
            local returns = {}
            for m, iname in pairs(svc.returns or {}) do
                if methods[m] then returns[m] = iname end
            end
            d.returns = map(returns)
        end
        out[name] = d
    end
    return map(out)
end

-- Whether the service's auth policies let the caller in at all: for a service that declares
-- no methods, so that there is no method to ask its decide phases about. A scope can reach the
-- service when its first segment matches the service's name ("demo.*", "d?mo.x", "**").
local function admitted(name, svc, client)
    for _, p in ipairs(svc.policies or {}) do
        if p.name == "auth" then
            local who = client.identity
            if not who then return false end
            local ids = p.conf and p.conf.identities
            if ids then
                local found = false
                for _, i in ipairs(ids) do found = found or i == who end
                if not found then return false end
            end
            local reach = false
            for _, scope in ipairs(client.scopes or {}) do
                local first = match(scope, "^%*%*") and "**" or match(scope, "^[^.]*")
                reach = reach or glob.compile({ first })(name)
            end
            if not reach then return false end
        end
    end
    return true
end

local function filter(config, built, full, client)
    local out = {}
    for name, d in pairs(full) do
        local p = built.services and built.services[name]
        if not p then
            out[name] = d -- no policies: anyone may call anything
        else
            local methods, any = {}, false
            for m, spec in pairs(d.methods) do
                if policy.allows(p, m, client) then methods[m], any = spec, true end
            end
            local svc = config.services[name]
            if any or (not next(svc.methods or {}) and admitted(name, svc, client)) then
                local o = { methods = map(methods), upstreams = d.upstreams }
                if d.interfaces then -- only what the decide phases let through on objects
                    local ifaces, returns = {}, {}
                    for iname, ms in pairs(d.interfaces) do
                        local keep = {}
                        for m, spec in pairs(ms) do
                            if policy.allows(p, m, client, true) then keep[m] = spec end
                        end
                        ifaces[iname] = map(keep)
                    end
                    for m, iname in pairs(d.returns) do
                        if methods[m] then returns[m] = iname end
                    end
                    o.interfaces, o.returns = map(ifaces), map(returns)
                end
                out[name] = o
            end
        end
    end
    return map(out)
end

--- What `client` (the connection's table: identity, identity_key, scopes) may call: the
-- services and declared methods whose decide phases (guard, auth, your own) let it through.
-- `built` is the running generation's ghost.gateway.start() result; the answer is cached in
-- it per identity, so it is recomputed only after a reload. The caller must not modify it.
function _M.for_client(config, built, client)
    local cache = built.describe
    if not cache then
        cache = { full = _M.describe(config), by_identity = {}, n = 0 }
        built.describe = cache
    end
    local key = client.identity_key or ""
    local d = cache.by_identity[key]
    if d then return d end
    d = filter(config, built, cache.full, client)
    if cache.n < MAX_CACHED_IDENTITIES then
        cache.by_identity[key] = d
        cache.n = cache.n + 1
    end
    return d
end

return _M
