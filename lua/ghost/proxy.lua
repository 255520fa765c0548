-- ghost.proxy: the proxy objects of ghost.connect.
--
-- gw.users is a node made by __index and cached in gw (rawset), so gw.users.get_profile is
-- two table lookups after the first access. Calling a node calls the remote method of its
-- full name: gw.billing.invoices.list() is `billing.invoices.list`. gw.users:get_profile(42)
-- passes gw.users as the first argument: a node called with its parent first drops it, so both
-- styles send params [42].
--
-- Never proxied: names beginning with "__" (metamethod lookups, debuggers, serialisers) and
-- keys that are not strings; they are nil. The local methods (close, ping, call, is_connected,
-- try, with) shadow remote names at every level; gw:call("svc.close", ...) reaches any name.
--
-- A view is what the nodes of one ghost.connect() result share: the client (the connection),
-- the call options (timeout, try) and the local methods. gw:try() and gw:with{...} make
-- other views on the same connection.

local type, rawset, rawequal, setmetatable, getmetatable, select, error, tostring, pairs = type,
    rawset, rawequal, setmetatable, getmetatable, select, error, tostring, pairs
local byte = string.byte

local _M = {}

-- A node's own fields, under keys that are not strings so that no name can reach them.
local NAME, VIEW, PARENT = {}, {}, {}

local node_mt = { __name = "ghost.proxy", __metatable = false }
local invoke, promise -- set by init()

local function new_node(view, name, parent)
    return setmetatable({ [NAME] = name, [VIEW] = view, [PARENT] = parent }, node_mt)
end

function node_mt.__index(node, k)
    if type(k) ~= "string" or (byte(k, 1) == 95 and byte(k, 2) == 95) then return nil end
    local view = node[VIEW]
    local m = view.methods[k]
    if m then return m end
    local name = node[NAME]
    if k == "promise" and name ~= "" then
        -- gw.svc.method:promise(...) (docs/client.md#promise-pipelining)
        local function p(a1, ...)
            if rawequal(a1, node) then return promise(view, name, ...) end
            return promise(view, name, a1, ...)
        end
        rawset(node, k, p)
        return p
    end
    local child = new_node(view, name == "" and k or name .. "." .. k, node)
    rawset(node, k, child)
    return child
end

function node_mt.__call(node, ...)
    local a1 = ...
    if a1 ~= nil and rawequal(a1, node[PARENT]) then
        return invoke(node[VIEW], node[NAME], select(2, ...))
    end
    return invoke(node[VIEW], node[NAME], ...)
end

function node_mt.__newindex(_, k)
    error("ghost proxies are read-only (assigning '" .. tostring(k) .. "')", 2)
end

function node_mt.__tostring(node)
    local name = node[NAME]
    return "ghost proxy " .. (name == "" and "(gateway " .. node[VIEW].client.addr .. ")" or name)
end

local function is_node(v)
    return type(v) == "table" and rawequal(getmetatable(v), false) and v[VIEW] ~= nil
end
_M.is_node = is_node

--- The view of a proxy (any node of it), or nil.
function _M.view_of(v)
    if is_node(v) then return v[VIEW] end
    return nil
end

--- The full name of a node ("" for the root).
function _M.name_of(v)
    if is_node(v) then return v[NAME] end
    return nil
end

local new_view

-- The local methods of a view: one set of closures per view, accepting both gw:m() and gw.m().
local function make_methods(view, local_impl)
    local m = {}
    for name, impl in pairs(local_impl) do
        m[name] = function(a1, ...)
            if is_node(a1) then return impl(view, ...) end
            return impl(view, a1, ...)
        end
    end
    return m
end

--- A view on client with options {try = bool, timeout_ms = number}; its root node is view.root.
function new_view(client, opts, local_impl)
    local view = { client = client, try = opts.try and true or false, timeout_ms = opts.timeout_ms,
        local_impl = local_impl }
    view.methods = make_methods(view, local_impl)
    view.root = new_node(view, "", nil)
    return view
end
_M.new_view = new_view

--- invoke(view, name, ...) is the function every call ends in (ghost.client).
function _M.init(fn, pfn)
    invoke, promise = fn, pfn
end

return _M
