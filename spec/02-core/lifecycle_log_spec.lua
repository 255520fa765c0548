-- The process's own events at the default log level (warn): one `ready` line at start (every
-- listener with its real port, the services, workers and pid), one `reloaded` or
-- `reload_failed` line per reload saying what changed, one `stopped` line.
local h = require "spec.support.helpers"

local function count(text, pattern)
    local n = 0
    for _ in text:gmatch(pattern) do
        n = n + 1
    end
    return n
end

describe("The start and reload lines at the default log level", function()
    local up

    before_each(function()
        up = assert(h.start_upstream())
    end)

    after_each(h.cleanup)

    it("print ready once, with every listener's real port, the services, workers and pid", function()
        local gw = assert(h.start_gateway(h.demo_config(up, nil, {
            http = { listen = "127.0.0.1:0" }, admin = { listen = "127.0.0.1:0" },
        }), { log_level = "warn" }))
        assert.matches("^%S+ info ready listen=tcp://127%.0%.0%.1:%d+ http=tcp://127%.0%.0%.1:%d+ "
            .. "admin=tcp://127%.0%.0%.1:%d+ services=1 workers=1 pid=%d+ config=%S+gateway%.lua$",
            gw.ready_line)
        assert.is_nil(gw.ready_line:find(":0 ", 1, true))
        assert.equal(1, count(gw:logs(), " ready "))
        assert.is_nil(gw:logs():find(" http_listening ", 1, true)) -- details stay at info
    end)

    it("print reloaded with the services added, removed and changed", function()
        local cfg = h.demo_config(up)
        cfg.services.old = { upstream = up.addr }
        local gw = assert(h.start_gateway(cfg, { log_level = "warn" }))
        local src = h.serialize({
            listen = gw.addr, drain_timeout = 2,
            services = { demo = { upstream = up.addr, deadline = 3 }, new = { upstream = up.addr } },
        })
        assert(h.write_file(gw.config_path, "return " .. src .. "\n"))
        local from = #gw.proc.lines + 1
        assert(gw:kill("sighup"))
        local line = assert(gw:wait_log(" reloaded ", h.timeout(5), from))
        assert.matches(" info reloaded config=%S+ services=2 added=new removed=old changed=demo reloads=1 ",
            line)
    end)

    it("print reload_failed with the reason, and the config kept", function()
        local gw = assert(h.start_gateway(h.demo_config(up), { log_level = "warn" }))
        assert(h.write_file(gw.config_path, "return { services = { demo = { upstream = 5 } } }\n"))
        local from = #gw.proc.lines + 1
        assert(gw:kill("sighup"))
        local line = assert(gw:wait_log(" reload_failed ", h.timeout(5), from))
        assert.matches(" error reload_failed reason=\".*upstream.*\" kept=%S+gateway%.lua$", line)
        assert.equal(1, count(gw:logs(), " reload_failed "))
    end)

    it("are hidden by log_level error", function()
        local dir = h.tmpdir()
        local port = h.unused_port()
        local cfg = h.demo_config(up, nil, { listen = "tcp://127.0.0.1:" .. port, log_level = "error" })
        assert(h.write_file(dir .. "/gateway.lua", "return " .. h.serialize(cfg) .. "\n"))
        local proc = assert(h.spawn(h.bin("ghostgate"), { "serve", "-c", dir .. "/gateway.lua" }))
        local c = assert(h.retry(function() return h.client("tcp://127.0.0.1:" .. port) end))
        assert.equal("up", c:call("demo.echo", { "up" }))
        c:close()
        proc:stop()
        assert.equal(0, proc.code)
        assert.equal("", proc:output())
    end)
end)
