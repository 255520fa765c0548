-- auth: the service needs an authenticated connection, and the identity's scopes must cover
-- the method.
--
--   auth {}                         any authenticated identity whose scopes match
--   auth { identities = { "ci" } }  only these identities
--
-- Identities come from `ghost.auth(token)` (see the config's `auth` section: static API keys
-- and HMAC-signed tokens). Scopes are globs over "service.method" ("demo.*", "billing.**").
-- The decision depends only on (identity, method), so the pipeline caches it per identity.
--
-- A callback (an upstream calling a function or object a client passed) reaches only a client
-- that is authenticated, with an identity this policy admits, and whose token has not expired:
-- it is judged as that client. Scopes are not asked: they say what a client may call, and a
-- callback is a call to it.

local setmetatable, ipairs = setmetatable, ipairs
local format = string.format

local _M = {
    name = "auth",
    priority = 900,
    schema = {
        type = "record",
        fields = {
            identities = { type = "array", elements = { type = "string" },
                           description = "identities allowed (default: any authenticated)" },
        },
    },
}

local mt = { __index = _M }

function _M.new(conf, service)
    local allowed
    if conf.identities then
        allowed = {}
        for _, i in ipairs(conf.identities) do allowed[i] = true end
    end
    return setmetatable({ allowed = allowed, service = service }, mt)
end

function _M:decide(method, client, _, callback)
    local who = client.identity
    if not who and callback then
        return "unauthenticated", format("service '%s' calls back only authenticated clients",
            self.service.name)
    end
    if not who then
        return "unauthenticated", format("service '%s' requires authentication: call ghost.auth(token) first",
            self.service.name)
    end
    if self.allowed and not self.allowed[who] then
        if callback then
            return "forbidden", format("service '%s' does not call back identity '%s'",
                self.service.name, who)
        end
        return "forbidden", format("identity '%s' may not call service '%s'", who, self.service.name)
    end
    if callback then return end
    local full = self.service.name .. "." .. method
    if not (client.scope_match and client.scope_match(full)) then
        return "forbidden", format("identity '%s' has no scope for '%s'", who, full)
    end
end

-- Per call only for tokens that expire: the cached decision must not outlive the token.
function _M:access(ctx)
    local c = ctx.client
    local exp = c.expires
    if exp and self.service.time() >= exp then
        c.identity, c.identity_key, c.scopes, c.scope_match, c.expires = nil, nil, nil, nil, nil
        ctx:reject("unauthenticated", ctx.callback and "the client's token expired"
            or "token expired: call ghost.auth(token) again")
    end
end

return _M
