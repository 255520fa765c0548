-- The command line: `ghostgate check -c FILE` validates a config without serving;
-- `ghostgate call [-a ADDR] [-t SECONDS] service.method ARG...` makes one call (ARGs are JSON)
-- and prints the result as JSON: exit 0 on a result, 1 on an error response
-- (`error CODE TYPE: MESSAGE` on stderr), 2 when it cannot reach the gateway.
-- `ghostgate token` mints tokens the gateway accepts; `reload` finds the gateway by its
-- pid_file; every command answers --help; `make run` (deploy/run-demo.sh) checks its ports.
local h = require "spec.support.helpers"
local cjson = require "cjson"

local function ghostgate(args)
    return assert(h.run(h.bin("ghostgate"), args, { timeout = h.timeout(10) }))
end

local function check(source)
    local path = h.tmpdir() .. "/config.lua"
    assert(h.write_file(path, source))
    return ghostgate({ "check", "-c", path }), path
end

describe("ghostgate check", function()
    after_each(h.cleanup)

    it("accepts a valid config: exit 0 and 'ok'", function()
        local r = check([[
return {
  listen = { "tcp://127.0.0.1:0", "unix:/tmp/gg-check-never-bound.sock" },
  log_level = "info",
  drain_timeout = 5,
  limits = { max_message_size = 65536, max_depth = 16, max_inflight_per_client = 8,
             max_clients = 100, idle_timeout = 60, message_timeout = 5 },
  services = {
    demo = { upstreams = { "tcp://127.0.0.1:7421" }, deadline = 2, connections = 1 },
    other = { upstream = "127.0.0.1:7422", keep_prefix = true },
  },
}
]])
        assert.equal(0, r.code, r.output)
        assert.matches("ok", r.stdout)
    end)

    it("counts every listener: msgpack-rpc, the HTTP front door and admin", function()
        local r = check([[
return {
  listen = { "tcp://127.0.0.1:0" },
  http = { listen = "127.0.0.1:0" },
  admin = { listen = "127.0.0.1:0" },
  services = { demo = { upstream = "tcp://127.0.0.1:7421" } },
}
]])
        assert.equal(0, r.code, r.output)
        assert.matches("ok %(3 listeners, 1 service%)", r.stdout)
    end)

    it("accepts the shipped default config (deploy/default.lua)", function()
        local r = ghostgate({ "check", "-c", "deploy/default.lua" })
        assert.equal(0, r.code, r.output)
    end)

    it("rejects a Lua syntax error: exit 1, and says what is wrong", function()
        local r = check("return { listen = \"tcp://127.0.0.1:0\",\n")
        assert.equal(1, r.code, r.output)
        assert.matches("expected", r.stderr)
    end)

    it("rejects an unknown option, naming it", function()
        local r = check([[return { listen = "tcp://127.0.0.1:0", bogus_option = 1, services = {} }]])
        assert.equal(1, r.code, r.output)
        assert.matches("bogus_option", r.stderr)
    end)

    it("rejects an unknown limit, naming it", function()
        local r = check([[return { limits = { max_bogus = 3 }, services = {} }]])
        assert.equal(1, r.code, r.output)
        assert.matches("max_bogus", r.stderr)
    end)

    it("rejects an option of the wrong type, naming it", function()
        local r = check([[return { limits = { max_clients = "many" }, services = {} }]])
        assert.equal(1, r.code, r.output)
        assert.matches("max_clients", r.stderr)
    end)

    it("rejects a bad listen address, naming it", function()
        local r = check([[return { listen = "bogus://127.0.0.1:1", services = {} }]])
        assert.equal(1, r.code, r.output)
        assert.matches("bogus://127.0.0.1:1", r.stderr, 1, true)
    end)

    it("rejects a bad upstream address, naming it", function()
        local r = check([[return { services = { demo = { upstreams = { "nowhere" } } } }]])
        assert.equal(1, r.code, r.output)
        assert.matches("nowhere", r.stderr, 1, true)
    end)

    it("rejects a config that does not return a table", function()
        local r = check("return 42\n")
        assert.equal(1, r.code, r.output)
        assert.is_true(#r.stderr > 0)
    end)

    it("rejects a missing file, naming it", function()
        local path = h.tmpdir() .. "/does-not-exist.lua"
        local r = ghostgate({ "check", "-c", path })
        assert.equal(1, r.code, r.output)
        assert.matches("does-not-exist.lua", r.stderr, 1, true)
    end)
end)

describe("ghostgate serve", function()
    it("lists the log levels when -l names an unknown one: exit 64", function()
        local r = ghostgate({ "serve", "-c", "deploy/default.lua", "-l", "verbose" })
        assert.equal(64, r.code, r.output)
        assert.matches("unknown log level 'verbose' %(levels: error, warn, info, debug%)", r.stderr)
    end)
end)

describe("ghostgate call", function()
    local d

    before_each(function()
        d = h.setup_demo()
    end)

    after_each(h.cleanup)

    it("prints the result as JSON and exits 0", function()
        local r = ghostgate({ "call", "-a", d.gw.addr, "demo.add", "2", "3" })
        assert.equal(0, r.code, r.output)
        assert.equal(5, cjson.decode(r.stdout))
        r = ghostgate({ "call", "-a", d.gw.addr, "demo.echo", '{"a":[1,2,"x"],"b":true}' })
        assert.equal(0, r.code, r.output)
        assert.same({ a = { 1, 2, "x" }, b = true }, cjson.decode(r.stdout))
        r = ghostgate({ "call", "-a", d.gw.addr, "demo.echo", '"hello"' })
        assert.equal(0, r.code, r.output)
        assert.equal("hello", cjson.decode(r.stdout))
    end)

    it("reaches the gateway over a unix socket too", function()
        local path = h.tmpdir() .. "/gw.sock"
        local gw = assert(h.start_gateway(h.demo_config(d.up, nil, { listen = "unix:" .. path })))
        local r = ghostgate({ "call", "-a", gw.unix, "demo.echo", '"via unix"' })
        assert.equal(0, r.code, r.output)
        assert.equal("via unix", cjson.decode(r.stdout))
    end)

    it("prints `error 404 no_such_service` and exits 1 for an unknown service", function()
        local r = ghostgate({ "call", "-a", d.gw.addr, "nosuch.echo", "1" })
        assert.equal(1, r.code, r.output)
        assert.matches("^error 404 no_such_service", r.stderr)
    end)

    it("prints an upstream's error and exits 1", function()
        local r = ghostgate({ "call", "-a", d.gw.addr, "demo.fail", '"boom"' })
        assert.equal(1, r.code, r.output)
        assert.matches("^error 1 app_error: boom", r.stderr)
    end)

    it("exits 2 when no gateway listens at the address", function()
        local r = ghostgate({ "call", "-a", "tcp://127.0.0.1:" .. h.unused_port(), "demo.echo", "1" })
        assert.equal(2, r.code, r.output)
        assert.is_true(#r.stderr > 0)
    end)
end)

describe("ghostgate token", function()
    local SECRET = "0123456789abcdef0123456789abcdef"

    after_each(h.cleanup)

    local function token_config(auth)
        local path = h.tmpdir() .. "/config.lua"
        assert(h.write_file(path, "return " .. h.serialize({
            listen = "tcp://127.0.0.1:0", auth = auth or { hmac_secret = SECRET }, services = {},
        }) .. "\n"))
        return path
    end

    it("refuses an identity a token cannot carry: exit 1 and the reason, no crash", function()
        local r = ghostgate({ "token", "-c", token_config(), "-i", "a:b" })
        assert.equal(1, r.code, r.output)
        assert.equal(0, r.signal)
        assert.equal("ghostgate token: identity must be letters, digits, _ . @ -", r.stderr)
        assert.equal("", r.stdout)
        r = ghostgate({ "token", "-c", token_config(), "-i", "ci", "-s", "demo.*:x" })
        assert.equal(1, r.code, r.output)
        assert.equal("ghostgate token: scopes cannot contain ':'", r.stderr)
    end)
end)

describe("ghostgate token mints tokens the gateway accepts", function()
    local SECRET = "0123456789abcdef0123456789abcdef"

    after_each(h.cleanup)

    local function guarded_gateway(up)
        return assert(h.start_gateway(string.format([[
return {
    listen = "tcp://127.0.0.1:0", drain_timeout = 2,
    auth = { hmac_secret = %q, max_ttl = 600 },
    services = { demo = { upstream = %q, policies = { auth {} } } },
}
]], SECRET, up.addr)))
    end

    it("refuses a TTL above the config's max_ttl, naming max_ttl: exit 1, no token", function()
        local up = assert(h.start_upstream())
        local gw = guarded_gateway(up)
        local r = ghostgate({ "token", "-c", gw.config_path, "-i", "ci", "-t", "999999" })
        assert.equal(1, r.code, r.output)
        assert.equal("", r.stdout)
        assert.matches("TTL 999999 s exceeds auth.max_ttl (600 s) in " .. gw.config_path ..
            ": the gateway would refuse the token; use -t 600 or less, or raise max_ttl", r.stderr, 1, true)
        r = ghostgate({ "token", "-c", gw.config_path, "-i", "ci", "-t", "600" })
        assert.equal(0, r.code, r.output)
        r = ghostgate({ "call", "-a", gw.addr, "-T", r.stdout, "demo.echo", '"in time"' })
        assert.equal(0, r.code, r.output)
        assert.equal('"in time"', r.stdout)
    end)

    it("gives every scope ('**') without -s, as API keys do: calls are allowed", function()
        local up = assert(h.start_upstream())
        local gw = guarded_gateway(up)
        local r = ghostgate({ "token", "-c", gw.config_path, "-i", "ci", "-t", "60" })
        assert.equal(0, r.code, r.output)
        assert.matches("^gg1:ci:%d+:%*%*:%x+$", r.stdout)
        r = ghostgate({ "call", "-a", gw.addr, "-T", r.stdout, "demo.add", "2", "3" })
        assert.equal(0, r.code, r.output)
        assert.equal("5", r.stdout)
    end)

    it("warns that a token minted with -s '' can call nothing behind auth", function()
        local up = assert(h.start_upstream())
        local gw = guarded_gateway(up)
        local r = ghostgate({ "token", "-c", gw.config_path, "-i", "ci", "-t", "60", "-s", "" })
        assert.equal(0, r.code, r.output)
        assert.equal("ghostgate token: warning: the token has no scopes: every service with the auth " ..
            "policy will refuse its calls (403)", r.stderr)
        r = ghostgate({ "call", "-a", gw.addr, "-T", r.stdout, "demo.add", "2", "3" })
        assert.equal(1, r.code, r.output)
        assert.equal("error 403 forbidden: identity 'ci' has no scope for 'demo.add'", r.stderr)
    end)

    it("says what is wrong with a bad TTL: exit 64 and the usage", function()
        local r = ghostgate({ "token", "-c", "deploy/default.lua", "-i", "ci", "-t", "soon" })
        assert.equal(64, r.code, r.output)
        assert.matches("^ghostgate token: bad TTL 'soon' %(seconds, at least 1%)\nusage: ghostgate token",
            r.stderr)
    end)
end)

describe("ghostgate help", function()
    after_each(h.cleanup)

    -- each command and the options its --help must list
    local COMMANDS = {
        serve = { "-c, --config", "-l, --log-level", "-h, --help" },
        check = { "-c, --config", "-h, --help" },
        call = { "-a ADDR", "-t SECONDS", "-T TOKEN", "-h, --help" },
        reload = { "-p PIDFILE", "-c FILE", "-h, --help" },
        token = { "-c FILE", "-i IDENTITY", "-t TTL", "-s SCOPES", "-h, --help" },
        run = { "-h, --help" },
        stubs = { "-a ADDR", "-t SECONDS", "-o DIR", "-h, --help" },
        register = { "-r, --redis URL", "-s, --service NAME", "-a, --addr ADDR", "-t, --ttl SECONDS",
            "-l, --log-level", "-h, --help" },
        version = {},
    }

    local function usage_lines(text)
        local lines = {}
        for line in text:gmatch("[^\n]+") do
            local l = line:match("^usage: (ghostgate .*)$") or line:match("^%s+(ghostgate .*)$")
                or (#lines > 0 and line:match("^       (%s+%[.*)$")) -- a command's second line
            if l then lines[#lines + 1] = l end
        end
        return lines
    end

    it("lists every command, as README's command list does", function()
        local r = ghostgate({ "--help" })
        assert.equal(0, r.code, r.output)
        assert.equal("", r.stderr)
        local listed = usage_lines(r.stdout)
        local readme = assert(h.read_file("README.md"))
        local block = assert(readme:match("\n## Commands\n\n```\n(.-)\n```\n"), "README has no command list")
        assert.same(h.split(block, "\n"), listed)
        for cmd in pairs(COMMANDS) do
            assert.matches("\nghostgate " .. cmd .. "[ \n]", "\n" .. table.concat(listed, "\n") .. "\n")
        end
        assert.same(listed, usage_lines(ghostgate({ "help" }).stdout))
    end)

    for cmd, options in pairs(COMMANDS) do
        it("`" .. cmd .. " --help` prints the command's usage and every option on stdout, exit 0", function()
            for _, flag in ipairs({ "--help", "-h" }) do
                local r = ghostgate({ cmd, flag })
                assert.equal(0, r.code, r.output)
                assert.equal("", r.stderr)
                assert.matches("^usage: ghostgate " .. cmd .. "[ \n]", r.stdout)
                for _, opt in ipairs(options) do
                    assert.matches("\n  " .. opt, r.stdout, 1, true)
                end
            end
        end)
    end

    it("says what is wrong with a command line, then the usage, on stderr: exit 64", function()
        local r = ghostgate({ "serve", "--bogus" })
        assert.equal(64, r.code, r.output)
        assert.equal("", r.stdout)
        assert.matches("^ghostgate serve: unexpected argument '%-%-bogus'\nusage: ghostgate serve", r.stderr)
        r = ghostgate({ "check" })
        assert.equal(64, r.code, r.output)
        assert.matches("^ghostgate check: %-c FILE is required\nusage: ghostgate check", r.stderr)
        r = ghostgate({ "reload", "-x" })
        assert.equal(64, r.code, r.output)
        assert.matches("^ghostgate reload: unexpected argument '%-x'\nusage: ghostgate reload", r.stderr)
        r = ghostgate({ "frobnicate" })
        assert.equal(64, r.code, r.output)
        assert.matches("^ghostgate: unknown command 'frobnicate'\nusage: ghostgate serve", r.stderr)
    end)
end)

describe("ghostgate call says what went wrong", function()
    local legacy = require "spec.support.legacy"
    local uv = require "luv"

    after_each(h.cleanup)

    it("a method name without a method: says the method is missing, exit 64", function()
        local r = ghostgate({ "call", "demo" })
        assert.equal(64, r.code, r.output)
        assert.matches("^ghostgate call: 'demo' names no method: write service.method " ..
            "%(e.g. demo.echo%)\nusage: ghostgate call", r.stderr)
        r = ghostgate({ "call", ".echo" })
        assert.equal(64, r.code, r.output)
        assert.matches("^ghostgate call: '.echo' names no service: write service.method", r.stderr)
    end)

    it("a JSON-RPC upstream's error: `error CODE remote_error: MESSAGE data: JSON`, exit 1", function()
        local up = legacy.jsonrpc()
        local gw = legacy.gateway({ calc = { protocol = "jsonrpc-http", upstream = up.url } })
        local r = ghostgate({ "call", "-a", gw.addr, "calc.fail", '"boom"' })
        assert.equal(1, r.code, r.output)
        assert.equal('error -32000 remote_error: boom data: {"detail":"from fail"}', r.stderr)
        -- the gateway's own errors, in the same format
        r = ghostgate({ "call", "-a", gw.addr, "nosuch.echo" })
        assert.equal(1, r.code, r.output)
        assert.equal("error 404 no_such_service: no such service 'nosuch'", r.stderr)
    end)

    it("an address keeps its scheme in the error", function()
        local r = ghostgate({ "call", "-a", "tcp://127.0.0.1", "demo.echo" })
        assert.equal(2, r.code, r.output)
        assert.equal("ghostgate call: address 'tcp://127.0.0.1' is not tcp://host:port or unix:/path",
            r.stderr)
    end)

    -- A kit listener that answers the first bytes it gets with `answer`, then closes. Returns
    -- its address and the server handle (closed by the caller).
    local function answering(answer)
        local server = uv.new_tcp()
        assert(server:bind("127.0.0.1", 0))
        assert(server:listen(8, function()
            local conn = uv.new_tcp()
            server:accept(conn)
            conn:read_start(function(_, data)
                if data then
                    conn:write(answer, function() conn:close() end)
                    conn:read_stop()
                end
            end)
        end))
        return "tcp://127.0.0.1:" .. server:getsockname().port, server
    end

    it("errors of other shapes: still `error CODE TYPE: MESSAGE`, as the Lua client reads them", function()
        -- [1, 1, "nope", nil]: a bare string
        local addr, server = answering("\148\1\1\164nope\192")
        local r = ghostgate({ "call", "-a", addr, "demo.echo", "1" })
        server:close()
        assert.equal(1, r.code, r.output)
        assert.equal("error 500 remote_error: nope", r.stderr)
        -- [1, 1, {x = 1}, nil]: a map without a message
        addr, server = answering("\148\1\1\129\161x\1\192")
        r = ghostgate({ "call", "-a", addr, "demo.echo", "1" })
        server:close()
        assert.equal(1, r.code, r.output)
        assert.equal('error 500 remote_error: the upstream returned an error without a message data: {"x":1}',
            r.stderr)
    end)

    it("a peer that does not speak MessagePack-RPC: says so, with what it sent (escaped), exit 2", function()
        -- a kit listener answering like an HTTP server
        local addr, server = answering("HTTP/1.1 400 Bad Request\r\nX: \27[31m\r\n\r\n")
        local r = ghostgate({ "call", "-a", addr, "demo.echo", "1" })
        server:close()
        assert.equal(2, r.code, r.output)
        assert.equal("ghostgate call: the peer does not speak MessagePack-RPC (message is not an " ..
            'array): it sent "HTTP/1.1 400 Bad Request\\x0d\\x0aX: \\x1b[31m\\x0d\\x0a\\x0d\\x0a" (' ..
            addr .. ")", r.stderr)
    end)
end)

describe("ghostgate stubs says what went wrong", function()
    after_each(h.cleanup)

    it("names an unreachable gateway once", function()
        local addr = "tcp://127.0.0.1:" .. h.unused_port()
        local r = ghostgate({ "stubs", "-a", addr, "-t", "5", "-o", h.tmpdir() .. "/stubs" })
        assert.equal(1, r.code, r.output)
        assert.equal("ghostgate stubs: cannot connect to " .. addr .. ": connection refused", r.stderr)
    end)
end)

describe("ghostgate reload and pid_file", function()
    after_each(h.cleanup)

    local function exists(path)
        local f = io.open(path, "r")
        if f then f:close() end
        return f ~= nil
    end

    for _, workers in ipairs({ 1, 2 }) do
        it("workers = " .. workers .. ": pid_file holds the pid while serving and is removed at exit;" ..
            " reload then says the gateway is not running", function()
            local up = assert(h.start_upstream())
            local pid_file = h.tmpdir() .. "/gw.pid"
            local top = { workers = workers, pid_file = pid_file }
            local gw = assert(h.start_gateway(h.demo_config(up, nil, top)))
            assert.equal(tostring(gw.logged_pid) .. "\n", h.read_file(pid_file))
            local r = ghostgate({ "reload", "-c", gw.config_path })
            assert.equal(0, r.code, r.output)
            assert(gw:wait_log("reload", h.timeout(5)))
            assert(gw:kill("sigterm"))
            assert.equal(0, gw:wait_exit(h.timeout(10)))
            assert.is_false(exists(pid_file))
            r = ghostgate({ "reload", "-c", gw.config_path })
            assert.equal(1, r.code, r.output)
            assert.equal("ghostgate reload: the gateway is not running (" .. pid_file ..
                " does not exist); start it with: ghostgate serve -c FILE", r.stderr)
        end)
    end

    it("says the gateway is not running when the pid file names a process that is gone", function()
        local gone = ghostgate({ "version" }).proc.pid -- exited and reaped
        local pid_file = h.tmpdir() .. "/stale.pid"
        assert(h.write_file(pid_file, gone .. "\n"))
        local r = ghostgate({ "reload", "-p", pid_file })
        assert.equal(1, r.code, r.output)
        assert.equal("ghostgate reload: the gateway is not running (no process has pid " .. gone ..
            ", read from " .. pid_file .. ", a file left by a gateway that did not exit cleanly); " ..
            "start it with: ghostgate serve -c FILE", r.stderr)
    end)
end)

describe("make run (deploy/run-demo.sh)", function()
    local uv = require "luv"
    local build = os.getenv("GG_BUILD") or "build"

    after_each(h.cleanup)

    local function run_demo(env)
        return assert(h.spawn("sh", { "deploy/run-demo.sh", build }, { name = "run-demo", env = env }))
    end

    it("checks its ports first: a port in use stops it before anything starts, naming the holder", function()
        local held = uv.new_tcp()
        assert(held:bind("127.0.0.1", 0))
        assert(held:listen(1, function() end))
        local port = held:getsockname().port
        local p = run_demo({ DEMO_PORT = port, DEMO_UPSTREAM_PORT = h.unused_port() })
        local code = p:wait_exit(h.timeout(10))
        held:close()
        assert.equal(1, code, p:output())
        local err = table.concat(p.stderr, "\n")
        assert.matches("^run%-demo: port " .. port .. " is in use by [%w_.%-]+ %(pid " .. uv.os_getpid() ..
            "%)\nrun%-demo: stop it, or run the demo on other ports: make run DEMO_PORT=N", err)
        assert.equal("", table.concat(p.stdout, "\n")) -- no upstream started, no banner
    end)

    it("runs the demo on the ports DEMO_PORT and DEMO_UPSTREAM_PORT say", function()
        local port, up_port = h.unused_port(), h.unused_port()
        local p = run_demo({ DEMO_PORT = port, DEMO_UPSTREAM_PORT = up_port })
        local pids = {} -- the script's children, stopped by pid should the test fail halfway
        finally(function()
            for _, pid in ipairs(pids) do uv.kill(pid, "sigkill") end
        end)
        local banner = assert(p:wait_line("^run%-demo: upstream tcp://127%.0%.0%.1:" .. up_port .. " ",
            h.timeout(10)))
        pids[1] = tonumber(banner:match("%(pid (%d+)%)"))
        assert(p:wait_line("^run%-demo: try:  .*/ghostgate call %-a tcp://127%.0%.0%.1:" .. port ..
            " demo%.echo", h.timeout(10)))
        local ready = assert(p:wait_line("ready listen=tcp://127%.0%.0%.1:" .. port .. " ", h.timeout(10)))
        local r = ghostgate({ "call", "-a", "tcp://127.0.0.1:" .. port, "demo.add", "2", "3" })
        assert.equal(0, r.code, r.output)
        assert.equal("5", r.stdout)
        -- Ctrl-C reaches the gateway (the script's foreground job): it drains, the script stops
        -- the upstream and exits with the gateway's status
        pids[2] = tonumber(ready:match("pid=(%d+)"))
        assert(uv.kill(pids[2], "sigterm"))
        assert.equal(0, p:wait_exit(h.timeout(10)), p:output())
        assert.is_nil(uv.kill(pids[1], 0), "the script left its upstream running")
        pids = {}
    end)
end)
