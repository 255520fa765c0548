-- ghost.config: the gateway's configuration schema. load() runs a config file, validates it
-- and returns a normalised table the C core reads; errors name the file and the option.

local schema = require "ghost.schema"
local policy = require "ghost.policy"
local auth = require "ghost.auth"
local consts = require "ghost.consts"

local type, pcall, setfenv, loadfile, tostring, pairs, ipairs, setmetatable =
    type, pcall, setfenv, loadfile, tostring, pairs, ipairs, setmetatable
local format, gmatch, match, sub, gsub, find, rep = string.format, string.gmatch, string.match,
    string.sub, string.gsub, string.find, string.rep
local insert, concat = table.insert, table.concat
local open = io.open
local getinfo = debug.getinfo

local _M = {}

local MiB = 1024 * 1024

local address = {
    type = "string",
    check = function(v)
        if v:match("^unix:") or v:match("^tcp://.+:%d+$") or v:match("^tls://.+:%d+$")
            or v:match("^[^/]+:%d+$") then
            return true
        end
        return nil, format("address %q is not tcp://host:port, tls://host:port or unix:/path", v)
    end,
}

-- An upstream: a listener address, or for jsonrpc-http an URL http://host:port/path.
local upstream_address = {
    type = "string",
    check = function(v)
        if v:match("^https?://[^/]+:%d+/") or v:match("^https?://[^/]+:%d+$") then return true end
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
        discover = { type = "boolean", default = false,
                     description = "take the endpoints from the Redis registry (top-level redis) "
                         .. "instead of upstreams, updated in place (docs/scale-out.md)" },
        deadline = { type = "number", default = 30, min = 0.001, max = 86400,
                     description = "seconds a call may take end to end" },
        connections = { type = "integer", min = 1, max = 64,
                        description = "pooled connections per upstream endpoint (default 2; 8 for "
                            .. "jsonrpc-http, whose connections carry one call at a time)" },
        policies = { type = "array", elements = { type = "any" }, default = function() return {} end,
                     list_hint = "expected a list of policies, in braces: policies = { guard { ... } }",
                     description = "policies run for every call: { guard { allow = {...} }, breaker {} }" },
        idempotent = { type = "array", elements = { type = "string" },
                       description = "methods (globs) safe to send twice, for retry" },
        objects = { type = "boolean", default = false,
                    description = "route remote objects (docs/protocol.md#remote-objects): results "
                        .. "are scanned for object references, which clients may then call" },
        keep_prefix = { type = "boolean", default = false,
                        description = "send 'svc.method' upstream instead of 'method'" },
        error_details = { type = "boolean", default = false,
                          description = "send clients adapter error messages and the tracebacks "
                              .. "adapters and backends put in their errors (development)" },
        method_names = { type = "string", default = "public", one_of = { "public", "any" },
                         description = "'public': the gateway refuses names with a segment starting "
                             .. "with '_', an empty segment, a control character or invalid UTF-8; "
                             .. "'any': such names are forwarded" },
        methods = require("ghost.types").methods_schema, -- { get_profile = { "id: integer" } }
        interfaces = {
            type = "map",
            keys = { type = "string", match = "^[%a_][%w_]*$",
                     description = "interface name (an identifier)" },
            values = require("ghost.types").methods_schema,
            description = "interfaces of the remote objects the service hands out, by name: "
                .. "{ File = { write = { \"s: string\" }, count = {} } } (sys.describe, stubs)",
        },
        returns = {
            type = "map", keys = { type = "string" }, values = { type = "string" },
            description = "methods whose result is an object of a declared interface: "
                .. "{ open = \"File\" } (stubs)",
        },
        tls = {
            type = "record",
            description = "tls:// and https:// upstreams, an adapter's https:// requests: "
                .. "{ ca, cert, key, server_name } (default: the system's CAs, the host written in "
                .. "the address)",
            fields = {
                ca = { type = "string", description = "CAs to check the upstream's certificate against" },
                cert = { type = "string", description = "client certificate, for an upstream that asks" },
                key = { type = "string" },
                server_name = { type = "string", description = "the name the certificate must hold" },
                handshake_timeout = { type = "number", default = 10, min = 0.01, max = 3600,
                                      description = "seconds a pooled connection's handshake may take" },
            },
        },
    },
    check = function(s)
        for m, iface in pairs(s.returns or {}) do
            if not (s.interfaces or {})[iface] then
                return nil, format("returns.%s: no interface '%s' is declared in interfaces", m, iface),
                    "returns"
            end
        end
        if s.connections == nil then s.connections = s.protocol == "jsonrpc-http" and 8 or 2 end
        local list, single = s.upstreams or {}, s.upstream
        if single then insert(list, 1, single) end
        s.upstreams, s.upstream = list, nil
        if s.discover then
            if s.adapter then
                return nil, "an adapter service cannot discover endpoints: it has none", "discover"
            elseif s.protocol ~= "msgpack-rpc" then
                return nil, "discover = true needs protocol msgpack-rpc (registered endpoints are "
                    .. "tcp://, tls:// or unix: addresses)", "discover"
            elseif #list > 0 then
                return nil, "discover = true takes the endpoints from the registry: remove upstream(s)",
                    "discover"
            end
            return true
        end
        if s.adapter then
            if #list > 0 then return nil, "an adapter service has no upstreams of its own" end
            return true
        end
        if #list == 0 then return nil, "needs an upstream (upstream = \"tcp://host:port\") or an adapter" end
        local http = s.protocol == "jsonrpc-http"
        if s.tls and (s.tls.cert == nil) ~= (s.tls.key == nil) then
            return nil, "tls.cert and tls.key go together", "tls"
        end
        for _, u in ipairs(list) do
            local at = u == single and "upstream" or "upstreams"
            if http and not u:match("^https?://") then
                return nil, format("upstream %q does not fit protocol jsonrpc-http: give its URL, "
                    .. "http://host:port/path", u), at
            elseif not http and u:match("^https?://") then
                return nil, format("upstream %q does not fit protocol msgpack-rpc: for a JSON-RPC "
                    .. "service over HTTP, set protocol = \"jsonrpc-http\"", u), at
            end
        end
        return true
    end,
}

-- TLS for the tls:// listeners (gateway/tls.c). Files are PEM; relative names start at the
-- config file's directory.
local tls_record = {
    type = "record",
    fields = {
        cert = { type = "string", required = true, description = "certificate chain (PEM)" },
        key = { type = "string", required = true, description = "private key (PEM)" },
        ca = { type = "string", description = "CA bundle that signs client certificates" },
        verify_client = { type = "boolean", default = false,
                          description = "require a client certificate signed by ca (mTLS)" },
        tls12 = { type = "boolean", default = false, description = "also accept TLS 1.2" },
        handshake_timeout = { type = "number", default = 10, min = 0.01, max = 3600,
                              description = "seconds a client has to finish its handshake" },
        max_handshakes = { type = "integer", default = 256, min = 1, max = 1000000,
                           description = "handshakes in progress per process; more wait in the "
                               .. "kernel's accept queue" },
    },
}

local function service_name(k)
    if k == "ghost" or k == "sys" then return nil, "service name is reserved" end
    return true
end

-- The ext type numbers of remote objects (docs/protocol.md#ext-types): defaults from the C core.
local OBJ = consts.objects
local function ext_number(default, what)
    return { type = "integer", default = default, min = OBJ.EXT_MIN, max = OBJ.EXT_MAX,
             description = "ext type of " .. what }
end
local objects_record = {
    type = "record", default = function() return {} end,
    fields = {
        ext = {
            type = "record", default = function() return {} end,
            fields = {
                object = ext_number(OBJ.EXT_OBJECT, "an object owned by the sender"),
                yours = ext_number(OBJ.EXT_YOURS, "an object owned by the receiver"),
                promise = ext_number(OBJ.EXT_PROMISE, "a promise"),
            },
            check = function(v)
                if v.object == v.yours or v.object == v.promise or v.yours == v.promise then
                    return nil, format("ext types must be distinct (object = %d, yours = %d, "
                        .. "promise = %d)", v.object, v.yours, v.promise)
                end
                return true
            end,
        },
    },
}

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
        lua_memory = { type = "integer", min = 0, max = 1024 * 1024 * MiB,
                       description = "bytes each Lua state (policies; each adapter) may hold while "
                           .. "its code runs; over it the call fails with 500 internal and the "
                           .. "state is collected. 0: no budget. Unset: 256 MiB (gateway/lua/lua_bridge.h)" },
        pid_file = { type = "string", description = "written at start, for `ghostgate reload`" },
        redis = { type = "string", description = "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or "
                      .. "unix:PATH[?db=N&password=P]: the Redis the gateways of a cluster share "
                      .. "(ratelimit scope = \"cluster\"; docs/scale-out.md). Unset: no Redis" },
        discover_resync = { type = "number", default = 5, min = 0.05, max = 3600,
                            description = "seconds between two full re-reads of the registry by "
                                .. "services with discover = true (a lost hint is found by the next)" },
        policy_path = { type = "string", default = "./policies/?.lua",
                        description = "where user policies are found: a package.path template "
                            .. "whose relative entries start at the config file's directory" },
        auth = auth.schema,
        objects = objects_record, -- remote objects of every service with objects = true
        tls = tls_record,
        http = http_listener,   -- the JSON-RPC over HTTP front door
        admin = { type = "record", fields = { listen = http_listener.fields.listen } },
        limits = {
            type = "record", default = function() return {} end,
            fields = {
                max_message_size = { type = "integer", default = 8 * MiB, min = 64, max = 1024 * MiB },
                max_depth = { type = "integer", default = 32, min = 2, max = 128 },
                max_decode_values = { type = "integer", default = 100000, min = 16, max = 4294967295,
                                      description = "values a Lua adapter decodes from one call's "
                                          .. "params (or an upstream's result)" },
                max_inflight_per_client = { type = "integer", default = 1024, min = 1, max = 1000000 },
                max_refs_per_client = { type = "integer", default = 10000, min = 1, max = 10000000 },
                max_kept_per_client = { type = "integer", default = 1000, min = 1, max = 1000000 },
                max_callback_depth = { type = "integer", default = 64, min = 1, max = 65535 },
                max_callbacks_in_flight = { type = "integer", default = 256, min = 1, max = 1000000 },
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

-- A relative file name, from the directory `dir` ("." stays out of the way: "./policies",
-- "/etc/ghostgate/policies", never "././policies").
local function from_dir(dir, file)
    if sub(file, 1, 1) == "/" then return file end
    file = gsub(file, "^%./", "")
    if dir == "." then return "./" .. file end
    return dir .. "/" .. file
end

-- The entries of a package.path template that are relative start at `dir`.
local function resolve_path(path, dir)
    if not dir then return path end
    local out = {}
    for e in gmatch(path, "[^;]+") do
        out[#out + 1] = from_dir(dir, e)
    end
    return concat(out, ";")
end

-- Where `key = ...` (or `["key"] = ...`) is written in text, from position init: its start.
local function find_key(text, key, init)
    local k = gsub(key, "%p", "%%%0")
    local a = find(text, "%f[%w_]" .. k .. "%s*=[^=]", init)
    local b = find(text, "%[%s*[\"']" .. k .. "[\"']%s*%]%s*=[^=]", init)
    if a and b then return a < b and a or b end
    return a or b
end

-- The line of the option at path `at` ("services.users.deadline") in the config file: each key
-- is looked for after the previous one, comments skipped. Text search, not parsing: a file that
-- builds its table with code gets no line (nil) rather than a wrong one.
local function line_of(file, at)
    local f = file and open(file, "r")
    if not f then return nil end
    local text = f:read("*a")
    f:close()
    text = gsub(text, "%-%-[^\n]*", function(c) return rep(" ", #c) end)
    local pos
    for key in gmatch(at, "[^%.%[%]]+") do
        if not match(key, "^%d+$") then -- a list index has no key in the text
            pos = find_key(text, key, pos and pos + 1 or 1)
            if not pos then return nil end
        end
    end
    if not pos then return nil end
    local _, n = gsub(sub(text, 1, pos), "\n", "")
    return n + 1
end

-- "gateway.lua:12: reason" when the line is known, "gateway.lua: reason" otherwise.
local function where(source, file, at)
    local line = at and line_of(file, at)
    return line and format("%s:%d", source, line) or source
end

-- Adapters are files: one that is missing fails `ghostgate check`, not only `serve`.
local function check_adapters(v, dir, source, file)
    for name, svc in pairs(v.services) do
        if svc.adapter then
            local path = from_dir(dir, svc.adapter)
            local f = open(path, "r")
            if not f then
                local at = format("services.%s.adapter", name)
                return nil, format("%s: %s: no adapter file %s (relative paths start at the config "
                    .. "file's directory)", where(source, file, at), at, path)
            end
            f:close()
        end
    end
    return true
end

--- Validate a config table. Returns the normalised table, or nil and "source: path: reason".
-- `dir` is the config file's directory (relative policy_path entries start there).
-- `file`: the config file, when there is one, to give the line of an option at fault.
function _M.normalize(t, source, dir, file)
    if type(t) ~= "table" then
        return nil, format("%s: the config must return a table, got %s", source, type(t))
    end
    local v, err, at = schema.validate(_M.schema, t, "")
    if not v then return nil, format("%s: %s", where(source, file, at), err) end
    v.policy_path = resolve_path(v.policy_path, dir)
    for _, l in ipairs({ { "listen", v.listen }, { "http.listen", v.http and v.http.listen },
                         { "admin.listen", v.admin and v.admin.listen } }) do
        for i, a in ipairs(l[2] or {}) do
            if sub(a, 1, 6) == "tls://" and not v.tls then
                return nil, format("%s: %s[%d]: %s needs a tls table (cert and key)",
                    where(source, file, l[1]), l[1], i, a)
            end
        end
    end
    for _, svc in pairs(v.services) do
        if svc.tls and dir then
            for _, k in ipairs({ "cert", "key", "ca" }) do
                if svc.tls[k] then svc.tls[k] = from_dir(dir, svc.tls[k]) end
            end
        end
    end
    if v.tls then
        if v.tls.verify_client and not v.tls.ca then
            return nil, format("%s: tls.verify_client: needs tls.ca (the CA of client certificates)",
                where(source, file, "tls"))
        end
        if dir then
            for _, k in ipairs({ "cert", "key", "ca" }) do
                if v.tls[k] then v.tls[k] = from_dir(dir, v.tls[k]) end
            end
        end
    end
    if dir then
        local ok
        ok, err = check_adapters(v, dir, source, file)
        if not ok then return nil, err end
    end
    for name, svc in pairs(v.services) do
        if svc.discover and not v.redis then
            return nil, format("%s: services.%s: discover = true needs the top-level redis option "
                .. "(the registry)", where(source, file, format("services.%s.discover", name)), name)
        elseif svc.discover and #name > 64 then
            return nil, format("%s: services.%s: a registry service name has at most 64 characters",
                where(source, file, format("services.%s.discover", name)), name)
        end
    end
    -- Policies are validated by their own schemas; errors name the file and line of the policy.
    for name, svc in pairs(v.services) do
        for i, spec in ipairs(svc.policies) do
            -- a constructor (`guard {...}`) recorded its line; a name or a plain table did not
            local list = format("services.%s.policies", name)
            local src = type(spec) == "table" and spec.__where and source or where(source, file, list)
            local p, perr = policy.validate(spec, format("%s: %s[%d]", src, list, i), v.policy_path)
            if not p then return nil, perr end
            if p.name == "ratelimit" and p.conf.scope == "cluster" and not v.redis then
                return nil, format("%s: ratelimit scope = \"cluster\" needs the top-level redis option",
                    p.where or format("%s: %s[%d]", src, list, i))
            end
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
    return _M.normalize(t, path, match(path, "^(.*)/[^/]*$") or ".", path)
end

return _M
