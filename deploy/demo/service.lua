-- The demo backend of `make run`, written with ghost.serve:
--   ghostgate run deploy/demo/service.lua [LISTEN]      (default tcp://127.0.0.1:7421)
-- The gateway's embedded default config routes service `demo` here, so once `make run` is up:
--   build/ghostgate call demo.echo '"hello"'    build/ghostgate call demo.add 2 40
local ghost = require "ghost"

local started = os.time()
local demo = {}

-- The first argument, as received (str stays str, bin stays bin).
function demo.echo(v) return v end

function demo.add(a, b) return a + b end

function demo.upper(s)
    if type(s) ~= "string" then error(ghost.error("bad_request", "upper expects a string", 400)) end
    return s:upper()
end

-- Seconds since the epoch, by the backend's clock.
function demo.time() return os.time() end

-- Answer v after `seconds` (other calls go on meanwhile).
function demo.sleep(seconds, v)
    ghost.sleep(seconds)
    return v
end

-- Raise an error: the caller gets {code = 500, type = "runtime_error", message, traceback}.
function demo.fail(message) error(message or "failed on purpose") end

function demo.info()
    return { uptime = os.time() - started, lua = jit and jit.version or _VERSION,
             methods = { "add", "echo", "fail", "info", "sleep", "time", "upper" } }
end

ghost.serve(demo, arg[1] or "tcp://127.0.0.1:7421")
