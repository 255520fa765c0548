-- ghost.auth: who a connection is. A client authenticates once per connection by calling
-- `ghost.auth(token)`; the identity it gets is what the `auth` policy and rate limits see.
--
-- Two kinds of token, both configured in the config's top-level `auth` section:
--   static API keys     auth = { keys = { ["k-123..."] = { identity = "ci", scopes = { "demo.*" } } } }
--   HMAC-signed tokens  auth = { hmac_secret = "...", max_ttl = 86400 }
--     token = "gg1:<identity>:<expires unix s>:<scopes, comma-separated>:<hex HMAC-SHA256>"
--     signed over everything before the last colon; mint one with `ghostgate token`.
--   client certificates auth = { certs = { ["CN=billing"] = { scopes = { "invoices.*" } } } }
--     on a tls:// listener with verify_client: the verified certificate's subject common name
--     is the connection's identity from the start, no token needed (gateway/tls.c).
-- Keys are kept as SHA-256 digests and looked up by the digest of the presented token, so the
-- lookup's timing says nothing about any key; signatures are compared in constant time.
-- Wrong tokens are rate-limited per client address; with the top-level `redis` option the
-- count is shared by every gateway on that Redis (gateway/proxy/cluster_auth.c), so a client
-- cannot multiply its guesses by the number of gateways.

local glob = require "policies.glob"
local codes = require("ghost.consts").errors

local type, pairs, tonumber, setmetatable = type, pairs, tonumber, setmetatable
local format, match, gmatch, find = string.format, string.match, string.gmatch, string.find
local floor = math.floor

local _M = {}

_M.schema = {
    type = "record",
    default = function() return {} end,
    fields = {
        keys = {
            type = "map", default = function() return {} end,
            keys = { type = "string", check = function(k)
                if #k < 16 then return nil, "API keys must be at least 16 characters" end
                return true
            end },
            values = {
                type = "record",
                fields = {
                    identity = { type = "string", required = true, match = "^[%w_.@%-]+$" },
                    scopes = { type = "array", elements = { type = "string" },
                               default = function() return { "**" } end },
                },
            },
        },
        certs = {
            type = "map", default = function() return {} end,
            keys = { type = "string", match = "^CN=[%w_.@:+%-]+$",
                     match_text = "CN=name (letters, digits, _ . @ : + -)" },
            values = {
                type = "record",
                fields = {
                    identity = { type = "string", match = "^[%w_.@%-]+$",
                                 description = "the identity policies see (default: the CN=... key)" },
                    scopes = { type = "array", elements = { type = "string" },
                               default = function() return { "**" } end },
                },
            },
        },
        hmac_secret = { type = "string", check = function(s)
            if #s < 32 then return nil, "hmac_secret must be at least 32 characters" end
            return true
        end },
        max_ttl = { type = "number", default = 86400, min = 1 },
        failures = { type = "integer", default = 5, min = 1,
                     description = "wrong tokens allowed per address per window" },
        failure_window = { type = "number", default = 60, min = 0.01 },
    },
}

local MAX_ADDRESSES = 10000

--- Build the authenticator from the validated `auth` section. `host` gives sha256_hex,
-- hmac_sha256_hex, consttime_eq and time (wall-clock seconds).
function _M.new(conf, host)
    local self = { host = host, conf = conf, by_digest = {}, failures = {}, nfailures = 0 }
    for key, v in pairs(conf.keys) do
        local digest = host.sha256_hex(key)
        self.by_digest[digest] = {
            identity = v.identity, scopes = v.scopes, scope_match = glob.compile(v.scopes),
            -- decisions are cached per key: same identity, same scopes
            key = "k:" .. digest,
        }
    end
    self.by_subject = {}
    for subject, v in pairs(conf.certs or {}) do
        self.by_subject[subject] = {
            identity = v.identity or subject, scopes = v.scopes, scope_match = glob.compile(v.scopes),
            key = "c:" .. subject,
        }
    end
    return setmetatable(self, { __index = _M })
end

local function throttled(self, address, now)
    local f = self.failures[address]
    if not f then return false end
    -- the cluster's count reached the limit (on any gateway): refused until `blocked`
    local blocked = f.blocked
    if blocked and now < blocked then return blocked - now end
    if now - f.since > self.conf.failure_window then
        self.failures[address] = nil
        self.nfailures = self.nfailures - 1
        return false
    end
    if f.count >= self.conf.failures then return self.conf.failure_window - (now - f.since) end
    return false
end

local function entry(self, address, now)
    local f = self.failures[address]
    if not f then
        if self.nfailures >= MAX_ADDRESSES then
            self.failures, self.nfailures = {}, 0 -- bounded: forget everyone rather than grow
        end
        f = { count = 0, since = now }
        self.failures[address] = f
        self.nfailures = self.nfailures + 1
    end
    return f
end

local function failed(self, address, now)
    local f = entry(self, address, now)
    f.count = f.count + 1
    -- counted in Redis too when the gateway has one (no-op otherwise; never waits)
    local count = self.host.cluster_auth_failed
    if count then count(address, self.conf.failures, self.conf.failure_window) end
end

--- The cluster counted `failures` wrong tokens from `address` (here or on a peer): refuse its
-- authentications for `wait` seconds (the rest of the cluster's window). Called by the core.
function _M:throttle(address, wait)
    local now = self.host.time()
    local f = entry(self, address, now)
    f.blocked = now + wait
end

local function verify_hmac(self, token, now)
    local secret = self.conf.hmac_secret
    if not secret then return nil end
    local body, sig = match(token, "^(gg1:[^:]+:%d+:[^:]*):(%x+)$")
    if not body then return nil end
    local expect = self.host.hmac_sha256_hex(secret, body)
    if not self.host.consttime_eq(expect, sig) then return nil end
    local identity, expires, scopes = match(body, "^gg1:([^:]+):(%d+):([^:]*)$")
    expires = tonumber(expires)
    if expires <= now then return nil, "token expired" end
    if expires - now > self.conf.max_ttl then return nil, "token lifetime exceeds max_ttl" end
    local list = {}
    for s in gmatch(scopes, "[^,]+") do list[#list + 1] = s end
    return { identity = identity, scopes = list, scope_match = glob.compile(list), expires = expires,
             key = "t:" .. identity .. ":" .. scopes }
end

--- Authenticate `client` (the connection's table) with `token`. On success sets
-- client.identity, client.identity_key, client.scopes and returns the identity. Otherwise
-- returns nil, code, message (401 wrong token, 429 too many wrong tokens from this address).
function _M:authenticate(client, token)
    local now = self.host.time()
    local address = client.host or client.address or "?"
    local wait = throttled(self, address, now)
    if wait then
        return nil, codes.rate_limited,
            format("too many failed authentications, retry after %.1f s", wait), wait
    end
    local who, why
    if type(token) == "string" and #token > 0 and #token <= 4096 then
        who = self.by_digest[self.host.sha256_hex(token)]
        if not who then who, why = verify_hmac(self, token, now) end
    end
    if not who then
        failed(self, address, now)
        return nil, codes.unauthenticated, why or "invalid token"
    end
    client.identity = who.identity
    client.identity_key = who.key -- what cached decisions are keyed by: identity and scopes
    client.scopes = who.scopes
    client.scope_match = who.scope_match
    client.expires = who.expires
    return who.identity
end

local no_scope = glob.compile({})

--- A connection that presented a verified client certificate (subject "CN=..."): its identity
-- and scopes from `certs`; a certificate not listed there is its subject with no scope (the
-- auth policy answers 403 rather than 401: the caller is known, just not allowed).
function _M:certificate(client, subject)
    local who = self.by_subject[subject]
    client.identity = who and who.identity or subject
    client.identity_key = who and who.key or ("c:" .. subject)
    client.scopes = who and who.scopes or {}
    client.scope_match = who and who.scope_match or no_scope
end

--- Mint an HMAC token (for `ghostgate token` and tests).
function _M.mint(host, secret, identity, ttl, scopes)
    if not match(identity, "^[%w_.@%-]+$") then return nil, "identity must be letters, digits, _ . @ -" end
    if scopes and find(scopes, ":", 1, true) then return nil, "scopes cannot contain ':'" end
    local body = format("gg1:%s:%d:%s", identity, floor(host.time() + ttl), scopes or "")
    return body .. ":" .. host.hmac_sha256_hex(secret, body)
end

return _M
