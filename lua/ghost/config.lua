-- ghost.config: the gateway's configuration schema. load() runs a config file, validates it
-- and returns a normalised table the C core reads; errors name the file and the option.

local schema = require "ghost.schema"
local policy = require "ghost.policy"
local auth = require "ghost.auth"

local type, pcall, setfenv, loadfile, tostring, pairs, ipairs, setmetatable =
    type, pcall, setfenv, loadfile, tostring, pairs, ipairs, setmetatable
local format, gmatch, match, sub = string.format, string.gmatch, string.match, string.sub
local insert, concat = table.insert, table.concat
local getinfo = debug.getinfo

local _M = {}

local MiB = 1024 * 1024

local address = {
    type = "string",
    check = function(v)
        if v:match("^unix:") or v:match("^tcp://.+:%d+$") or v:match("^[^/]+:%d+$") then
            return true
        end
        return nil, format("address %q is not tcp://host:port or unix:/path", v)
    end,
}

-- An upstream: a listener address, or for jsonrpc-http an URL http://host:port/path.
local upstream_address = {
    type = "string",
    check = function(v)
        if v:match("^http://[^/]+:%d+/") or v:match("^http://[^/]+:%d+$") then return true end
        return address.check(v)
    end,
}

-- An HTTP listener (front door, admin).
local http_listener = {
    type = "record",
    fields = {
        listen = { type = "array", elements = address, coerce_single = true, min_items = 1,
                   required = true },
        path = { type = "string", default = "/rpc", match = "^/", description = "JSON-RPC endpoint" },
        max_body = { type = "integer", default = 8 * 1024 * 1024, min = 64, max = 1024 * 1024 * 1024 },
    },
}

-- Extra HTTP headers: names are HTTP tokens, values one line; the framing headers are the
-- gateway's (a configured Content-Length could split one request into two).
local header_name = {
    type = "string",
    check = function(k)
        if not k:match("^[%w!#%$%%&'%*%+%-%.%^_`|~]+$") then
            return nil, format("header name %q is not an HTTP token", k)
        end
        local l = k:lower()
        if l == "content-length" or l == "transfer-encoding" or l == "connection" then
            return nil, format("header %q is set by the gateway", k)
        end
        return true
    end,
}
local header_value = {
    type = "string",
    check = function(v)
        if v:find("[\r\n%z]") then return nil, "a header value is one line (no CR, LF or NUL)" end
        return true
    end,
}

local service = {
    type = "record",
    fields = {
        upstream = upstream_address,
        upstreams = { type = "array", elements = upstream_address, coerce_single = true },
        protocol = { type = "string", default = "msgpack-rpc", one_of = { "msgpack-rpc", "jsonrpc-http" },
                     description = "what the upstreams speak" },
        headers = { type = "map", keys = header_name, values = header_value,
                    description = "extra HTTP headers sent to jsonrpc-http upstreams" },
        adapter = { type = "string", description = "a Lua file implementing the service in the gateway" },
        deadline = { type = "number", default = 30, min = 0.001, max = 86400,
                     description = "seconds a call may take end to end" },
        connections = { type = "integer", min = 1, max = 64,
                        description = "pooled connections per upstream endpoint (default 2; 8 for "
                            .. "jsonrpc-http, whose connections carry one call at a time)" },
        policies = { type = "array", elements = { type = "any" }, default = function() return {} end,
                     description = "policies run for every call: { guard { allow = {...} }, breaker {} }" },
        idempotent = { type = "array", elements = { type = "string" },
                       description = "methods (globs) safe to send twice, for retry" },
        keep_prefix = { type = "boolean", default = false,
                        description = "send 'svc.method' upstream instead of 'method'" },
        methods = require("ghost.types").methods_schema, -- { get_profile = { "id: integer" } }
    },
    check = function(s)
        if s.connections == nil then s.connections = s.protocol == "jsonrpc-http" and 8 or 2 end
        local list = s.upstreams or {}
        if s.upstream then insert(list, 1, s.upstream) end
        s.upstreams, s.upstream = list, nil
        if s.adapter then
            if #list > 0 then return nil, "an adapter service has no upstreams of its own" end
            return true
        end
        if #list == 0 then return nil, "needs an upstream (upstream = \"tcp://host:port\") or an adapter" end
        local http = s.protocol == "jsonrpc-http"
        for _, u in ipairs(list) do
            if http ~= (u:match("^http://") ~= nil) then
                return nil, format("upstream %q does not fit protocol %s", u, s.protocol)
            end
        end
        return true
    end,
}

local function service_name(k)
    if k == "ghost" or k == "sys" then return nil, "service name is reserved" end
    return true
end

_M.schema = {
    type = "record",
    fields = {
        listen = { type = "array", elements = address, coerce_single = true, min_items = 1,
                   default = function() return { "tcp://127.0.0.1:7420" } end },
        log_level = { type = "string", default = "warn", one_of = { "error", "warn", "info", "debug" } },
        drain_timeout = { type = "number", default = 10, min = 0, max = 3600 },
        workers = { type = "integer", default = 1, min = 1, max = 64,
                    description = "worker processes (SO_REUSEPORT); more than 1 adds a supervising master" },
        watchdog = { type = "number", default = 10, min = 0, max = 3600,
                     description = "seconds a policy may run without returning before its worker is killed" },
        pid_file = { type = "string", description = "written at start, for `ghostgate reload`" },
        policy_path = { type = "string", default = "./policies/?.lua",
                        description = "where user policies are found: a package.path template "
                            .. "whose relative entries start at the config file's directory" },
        auth = auth.schema,
        http = http_listener,   -- the JSON-RPC over HTTP front door
        admin = { type = "record", fields = { listen = http_listener.fields.listen } },
        limits = {
            type = "record", default = function() return {} end,
            fields = {
                max_message_size = { type = "integer", default = 8 * MiB, min = 64, max = 1024 * MiB },
                max_depth = { type = "integer", default = 32, min = 2, max = 128 },
                max_inflight_per_client = { type = "integer", default = 1024, min = 1, max = 1000000 },
                max_clients = { type = "integer", default = 10000, min = 1, max = 1000000 },
                max_calls = { type = "integer", default = 1000000, min = 16, max = 1048576,
                              description = "calls in flight in the whole gateway" },
                max_write_buffer = { type = "integer", default = 16 * MiB, min = 4096, max = 4096 * MiB,
                                     description = "bytes queued to one peer before it is paused" },
                idle_timeout = { type = "number", default = 300, min = 0.01, max = 86400 * 30 },
                message_timeout = { type = "number", default = 30, min = 0.01, max = 86400 },
                write_timeout = { type = "number", default = 60, min = 0.01, max = 86400,
                                  description = "seconds a peer may leave its answers unread" },
            },
        },
        services = {
            type = "map", default = function() return {} end,
            keys = { type = "string", match = "^[%w_%-]+$", match_text = "a name of letters, digits, _ and -",
                     check = service_name },
            values = service,
        },
    },
}

-- The entries of a package.path template that are relative start at `dir`.
local function resolve_path(path, dir)
    if not dir then return path end
    local out = {}
    for e in gmatch(path, "[^;]+") do
        if sub(e, 1, 1) ~= "/" then e = dir .. "/" .. e end
        out[#out + 1] = e
    end
    return concat(out, ";")
end

--- Validate a config table. Returns the normalised table, or nil and "source: path: reason".
-- `dir` is the config file's directory (relative policy_path entries start there).
function _M.normalize(t, source, dir)
    if type(t) ~= "table" then
        return nil, format("%s: the config must return a table, got %s", source, type(t))
    end
    local v, err = schema.validate(_M.schema, t, "")
    if not v then return nil, format("%s: %s", source, err) end
    v.policy_path = resolve_path(v.policy_path, dir)
    -- Policies are validated by their own schemas; errors name the file and line of the policy.
    for name, svc in pairs(v.services) do
        for i, spec in ipairs(svc.policies) do
            local where = format("%s: services.%s.policies[%d]", source, name, i)
            local p, perr = policy.validate(spec, where, v.policy_path)
            if not p then return nil, perr end
            svc.policies[i] = p
        end
    end
    return v
end

--- Run a config file in its own environment and validate what it returns.
function _M.load(path)
    local chunk, err = loadfile(path)
    if not chunk then return nil, err end
    -- The file sees the globals plus one constructor per policy (`guard { ... }`) that records
    -- the line it was written on, for error messages.
    local env = policy.constructors(getinfo)
    setfenv(chunk, setmetatable(env, { __index = _G }))
    local ok, t = pcall(chunk)
    if not ok then return nil, tostring(t) end
    return _M.normalize(t, path, match(path, "^(.*)/[^/]*$") or ".")
end

return _M
