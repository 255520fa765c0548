-- The REST users service (deploy/examples/users_service.lua) as the MessagePack-RPC service
-- `users`: clients call users.get(id) and users.create{ name = ..., email = ... }.
--
-- A gateway config points a service at this file:
--   services = { users = { adapter = "users_adapter.lua", policies = { guard {}, ratelimit {} } } }
-- It runs inside the gateway (docs/legacy.md): http.request and upstream.call wait without
-- blocking the gateway; json, log and the rest are given to the file by the gateway.
local BASE = os.getenv("USERS_URL") or "http://127.0.0.1:8081"

local users = {}

-- A failed request (connection refused, timeout) raised as it is: the caller gets the
-- gateway's 502 or 504, which the service's breaker counts.
local function request(t)
    t.timeout = t.timeout or 2
    return assert(http.request(t))
end

local function decoded(res)
    local v, err = json.decode(res.body)
    if err then error({ code = 502, type = "bad_upstream_response", message = err }) end
    return v
end

--- users.get(id) -> { id, name, email }; error not_found (404) when there is no such user.
function users.get(id)
    if type(id) ~= "number" or id % 1 ~= 0 then
        error({ code = 400, type = "bad_request", message = "users.get(id): id must be an integer" })
    end
    local res = request { url = BASE .. "/users/" .. id, headers = { Accept = "application/json" } }
    if res.status == 404 then
        error({ code = 404, type = "not_found", message = "no user " .. id })
    elseif res.status ~= 200 then
        error({ code = 502, type = "bad_upstream_response",
                message = "GET /users/" .. id .. ": HTTP " .. res.status })
    end
    return decoded(res)
end

--- users.create{ name = ..., email = ... } -> the new user, with its id.
function users.create(t)
    if type(t) ~= "table" then
        error({ code = 400, type = "bad_request", message = "users.create(t): t must be a table" })
    end
    local res = request {
        method = "POST", url = BASE .. "/users", body = json.encode(t),
        headers = { ["Content-Type"] = "application/json", Accept = "application/json" },
    }
    if res.status == 400 then
        error({ code = 400, type = "invalid_user", message = decoded(res).error })
    elseif res.status ~= 201 then
        error({ code = 502, type = "bad_upstream_response", message = "POST /users: HTTP " .. res.status })
    end
    log.info("created user %d", decoded(res).id)
    return decoded(res)
end

return users
