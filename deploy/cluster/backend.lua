-- A backend of deploy/local-cluster.sh: service `calc`, registered in Redis while it serves
-- (ghost.serve's register option, docs/scale-out.md), so that the gateways find it.
--   ghostgate run deploy/cluster/backend.lua LISTEN REDIS_URL
--   e.g. ghostgate run deploy/cluster/backend.lua tcp://127.0.0.1:7624 redis://127.0.0.1:7600
local ghost = require "ghost"

local listen = arg[1] or "tcp://127.0.0.1:7621"
local redis = arg[2] or "redis://127.0.0.1:7600"

local calc = {}

function calc.add(a, b) return a + b end

function calc.echo(v) return v end

-- Which backend answered: calls spread over every registered one.
function calc.who() return listen end

ghost.serve(calc, listen, { register = { redis = redis, service = "calc", ttl = 3 } })
