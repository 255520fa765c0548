-- A small REST service to put behind a Lua adapter (docs/legacy.md, README "Front a legacy
-- service"): users kept in memory, JSON over HTTP.
--
--   GET  /users/{id}   200 {"id": 1, "name": "...", "email": "..."}   404 when there is none
--   POST /users        {"name": "...", "email": "..."} -> 201 {"id": 2, ...}   400 when invalid
--   GET  /users        200 [ ...every user... ]
--
-- Run: luajit deploy/examples/users_service.lua [--port 8081]   (Debian: lua-luv, lua-cjson)
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path

local cjson = require "cjson.safe"
local tiny = require "tiny_http"

local users = { { id = 1, name = "Ada Lovelace", email = "ada@example.org" } }
local JSON = { ["Content-Type"] = "application/json" }

local function json(status, v, extra)
    local h = { ["Content-Type"] = "application/json" }
    for k, x in pairs(extra or {}) do h[k] = x end
    return status, cjson.encode(v), h
end

local function handle(req)
    local id = req.path:match("^/users/(%d+)$")
    if id and req.method == "GET" then
        local u = users[tonumber(id)]
        if not u then return json(404, { error = "no user " .. id }) end
        return json(200, u)
    end
    if req.path == "/users" and req.method == "GET" then
        return 200, #users == 0 and "[]" or cjson.encode(users), JSON
    end
    if req.path == "/users" and req.method == "POST" then
        local t = cjson.decode(req.body)
        if type(t) ~= "table" or type(t.name) ~= "string" or t.name == "" then
            return json(400, { error = "a user needs a name" })
        end
        if t.email ~= nil and (type(t.email) ~= "string" or not t.email:find("@", 1, true)) then
            return json(400, { error = "email must look like an address" })
        end
        local u = { id = #users + 1, name = t.name, email = t.email }
        users[u.id] = u
        return json(201, u, { Location = "/users/" .. u.id })
    end
    return json(404, { error = "no route for " .. req.method .. " " .. req.path })
end

local opts = tiny.args(arg)
if opts.port == 0 and not arg[1] then opts.port = 8081 end
tiny.run(tiny.serve(opts.host, opts.port, handle, { idle_timeout = opts.idle_timeout }), "users")
