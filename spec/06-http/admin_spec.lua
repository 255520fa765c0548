-- The admin endpoint (config `admin`, loopback): GET /metrics in the Prometheus text format,
-- /health (liveness), /ready (upstreams reachable) and /routes (the live routing table). It is
-- a listener of its own: its connections are not clients.
local h = require "spec.support.helpers"
local http = require "spec.support.http"
local cjson = require "cjson"

local function scrape(gw)
    local r = assert(http.get(gw.admin_url .. "/metrics"))
    assert.equal(200, r.status)
    return http.metrics(r.body), r
end

describe("Admin endpoint", function()
    after_each(function()
        http.cleanup()
        h.cleanup()
    end)

    it("/metrics counts the calls made: calls and errors per method and code, latency histograms",
        function()
            local up = assert(h.start_upstream())
            local gw = http.start(h.demo_config(up, { deadline = 0.3 }))
            -- 3 echo, 2 fail (upstream errors), 1 hang (504) over HTTP; 2 add over MessagePack
            local batch = {}
            for i = 1, 3 do
                batch[#batch + 1] = http.req(i, "demo.echo", { i })
            end
            batch[#batch + 1] = http.req(4, "demo.fail", { "no" })
            batch[#batch + 1] = http.req(5, "demo.fail", { "no" })
            batch[#batch + 1] = http.req(6, "demo.hang", {})
            batch[#batch + 1] = http.req(7, "nope.x", {}) -- no service: not a call of any
            local r = assert(http.rpc(gw, batch))
            assert.equal(7, #r.json)
            local c = assert(h.client(gw.addr))
            assert.equal(3, c:call("demo.add", { 1, 2 }))
            assert.equal(7, c:call("demo.add", { 3, 4 }))

            local m, resp = scrape(gw)
            assert.equal("text/plain; version=0.0.4; charset=utf-8", resp.headers["content-type"])
            local function calls(method)
                return http.sample(m, "ghostgate_calls_total", { service = "demo", method = method })
            end
            assert.equal(3, calls("echo"))
            assert.equal(2, calls("fail"))
            assert.equal(1, calls("hang"))
            assert.equal(2, calls("add"))
            assert.equal(2, http.sample(m, "ghostgate_errors_total",
                { service = "demo", method = "fail", code = "upstream" }))
            assert.equal(1, http.sample(m, "ghostgate_errors_total",
                { service = "demo", method = "hang", code = "504", type = "deadline_exceeded" }))
            assert.is_nil(http.sample(m, "ghostgate_errors_total", { method = "echo" }))
            -- histograms: cumulative buckets, +Inf = count = calls, the sum covers the 0.3 s hang
            for _, method in ipairs({ "echo", "fail", "hang", "add" }) do
                local labels = { service = "demo", method = method }
                local count = http.sample(m, "ghostgate_call_duration_seconds_count", labels)
                assert.equal(calls(method), count)
                local last = 0
                for _, s in ipairs(m) do
                    if s.name == "ghostgate_call_duration_seconds_bucket" and s.labels.method == method then
                        assert.is_true(s.value >= last, "buckets are not cumulative")
                        last = s.value
                    end
                end
                assert.equal(count, http.sample(m, "ghostgate_call_duration_seconds_bucket",
                    { service = "demo", method = method, le = "+Inf" }))
            end
            assert.is_true(http.sample(m, "ghostgate_call_duration_seconds_sum",
                { service = "demo", method = "hang" }) >= 0.29)
            assert.equal(0, http.sample(m, "ghostgate_call_duration_seconds_bucket",
                { service = "demo", method = "hang", le = "0.25" }))
            assert.equal(0, http.sample(m, "ghostgate_inflight_calls", { service = "demo" }))
            local ep = { service = "demo", upstream = up.addr }
            assert.equal(2, http.sample(m, "ghostgate_upstream_connections", ep))
            assert.equal(2, http.sample(m, "ghostgate_upstream_pool_size", ep))
            assert.equal(0, http.sample(m, "ghostgate_reloads_total", { result = "ok" }))
            assert.equal(1, http.sample(m, "ghostgate_http_responses_total",
                { listener = "jsonrpc", status = 200 }))
        end)

    it("/metrics gives a method a label only once a call of it passed the policies, escaped, "
        .. "and counts the rest as method=\"_other\"", function()
        local up = assert(h.start_upstream())
        local gw = http.start({ services = {
            guarded = { upstreams = { up.addr }, deadline = 5,
                        policies = { { name = "guard", allow = { "echo" } } } },
            -- method_names = "any": names the core would refuse reach the upstream, and /metrics
            plain = { upstreams = { up.addr }, deadline = 5, method_names = "any" },
        } })
        local c = assert(h.client(gw.addr))
        -- sends the calls 100 at a time; returns their responses
        local function calls(names)
            local out = {}
            for from = 1, #names, 100 do
                local ids = {}
                for i = from, math.min(from + 99, #names) do
                    ids[#ids + 1] = assert(c:request(names[i], {}))
                end
                for _, r in ipairs(assert(c:wait_all(ids))) do out[#out + 1] = r end
            end
            return out
        end
        -- an anonymous caller tries 300 names the guard refuses: none of them gets a label
        local refused = {}
        for i = 1, 300 do refused[i] = "guarded.nope_" .. i end
        for _, r in ipairs(calls(refused)) do assert(h.is_error(r.error, 403, "forbidden")) end
        assert.equal("x", c:call("guarded.echo", { "x" }))
        -- names that went upstream (no policies): one a label shows escaped, one in UTF-8, and
        -- names a label cannot show as sent, which go to _other
        calls({ 'plain.a"b\\c', "plain.h\195\169llo", "plain.\255\254", "plain.x\1y", "plain._other" })

        local r = assert(http.get(gw.admin_url .. "/metrics"))
        local m = http.metrics(r.body)
        local function count(service, method)
            return http.sample(m, "ghostgate_calls_total", { service = service, method = method })
        end
        for _, s in ipairs(m) do
            assert.is_nil((s.labels.method or ""):find("^nope_"), "a refused name has a label")
        end
        assert.equal(300, count("guarded", "_other"))
        assert.equal(300, http.sample(m, "ghostgate_errors_total",
            { service = "guarded", method = "_other", code = "403", type = "forbidden" }))
        assert.equal(1, count("guarded", "echo"))
        assert.truthy(r.body:find('ghostgate_calls_total{service="plain",method="a\\"b\\\\c"} 1\n', 1, true))
        assert.equal(1, count("plain", "h\195\169llo"))
        assert.equal(3, count("plain", "_other"))
        -- the body is UTF-8: the only bytes past ASCII are the one name sent in UTF-8
        assert.is_nil(r.body:gsub("h\195\169llo", ""):find("[\128-\255]"))
        assert.is_nil(r.body:find("[%z\1-\9\11-\31]"))

        -- 256 labels per service at most: the rest of the names that pass go to _other
        local names = {}
        for i = 1, 260 do names[i] = "plain.m" .. i end
        calls(names)
        m = http.metrics(assert(http.get(gw.admin_url .. "/metrics")).body)
        local labelled = 0
        for _, s in ipairs(m) do
            if s.name == "ghostgate_calls_total" and s.labels.service == "plain"
                and s.labels.method ~= "_other" then
                labelled = labelled + 1
            end
        end
        assert.equal(256, labelled)
        assert.equal(3 + 260 + 2 - 256, count("plain", "_other"))
    end)

    it("/metrics shows breaker states and rate-limit rejections", function()
        local up = assert(h.start_upstream())
        local gw = http.start(h.demo_config(up, { policies = {
            { name = "breaker", failures = 2, cooldown = 60 },
            { name = "ratelimit", rate = 1, burst = 1 },
        } }))
        local batch = {}
        for i = 1, 4 do
            batch[i] = http.req(i, "demo.echo", { i })
        end
        local r = assert(http.rpc(gw, batch))
        local limited = 0
        for _, v in ipairs(r.json) do
            if v.error and v.error.data.type == "rate_limited" then
                limited = limited + 1
                assert.equal(-32029, v.error.code)
            end
        end
        assert.is_true(limited >= 2)
        local m = scrape(gw)
        assert.equal(limited, http.sample(m, "ghostgate_rate_limited_total", { service = "demo" }))
        assert.equal(0, http.sample(m, "ghostgate_breaker_state", { service = "demo", upstream = up.addr }))
    end)

    it("/routes is the live routing table as JSON, and follows a reload", function()
        local up = assert(h.start_upstream())
        local cfg = {
            services = {
                demo = { upstreams = { up.addr }, deadline = 5, connections = 3,
                         policies = { { name = "guard", allow = { "echo" } }, { name = "breaker" } } },
                plain = { upstream = up.addr, keep_prefix = true },
            },
        }
        local gw = http.start(cfg)
        local r = assert(http.get(gw.admin_url .. "/routes"))
        assert.equal(200, r.status)
        assert.equal("application/json", r.headers["content-type"])
        local routes = r.json
        assert.equal(0, routes.reloads)
        assert.equal(2, #routes.services)
        local demo, plain = routes.services[1], routes.services[2]
        assert.equal("demo", demo.name)
        assert.equal("msgpack-rpc", demo.protocol)
        assert.equal(5, demo.deadline)
        assert.same({ "guard", "breaker" }, demo.policies)
        assert.equal(1, #demo.upstreams)
        assert.equal(up.addr, demo.upstreams[1].address)
        assert.equal(3, demo.upstreams[1].pool)
        assert(h.retry(function()
            local u = assert(http.get(gw.admin_url .. "/routes")).json.services[1].upstreams[1]
            return u.connected == 3, "connected " .. tostring(u.connected)
        end))
        assert.equal("closed", demo.upstreams[1].breaker)
        assert.equal("plain", plain.name)
        assert.is_true(plain.keep_prefix)
        assert.same({}, plain.policies)
        assert.equal(30, plain.deadline)

        -- a reload: the table follows
        cfg.services.extra = { upstream = up.addr }
        cfg.listen = "tcp://127.0.0.1:0"
        cfg.drain_timeout = 2
        cfg.http = { listen = gw.http }
        cfg.admin = { listen = gw.admin }
        assert(h.write_file(gw.config_path, "return " .. h.serialize(cfg) .. "\n"))
        assert(gw:kill("sighup"))
        gw.proc.signalled = false -- SIGHUP is not a stop
        assert(gw:wait_log("reloaded"))
        routes = assert(http.get(gw.admin_url .. "/routes")).json
        assert.equal(1, routes.reloads)
        assert.equal(3, #routes.services)
        assert.equal("extra", routes.services[2].name)
    end)

    it("/health answers 200 ok while the gateway serves and 503 while it drains", function()
        local up = assert(h.start_upstream())
        local gw = http.start(h.demo_config(up, nil, { drain_timeout = 5 }))
        local r = assert(http.get(gw.admin_url .. "/health"))
        assert.equal(200, r.status)
        assert.equal("ok", (r.body:gsub("%s+$", "")))
        -- a slow call keeps the drain going
        local slow = assert(h.spawn("curl", { "-sS", "--max-time", "10",
            "-H", "Content-Type: application/json",
            "--data-binary", cjson.encode(http.req(1, "demo.sleep", { 1000, "late" })), gw.rpc_url }))
        assert(h.await_upstream_calls(up, 1))
        assert(gw:kill("sigterm"))
        assert(h.retry(function()
            local rr = http.get(gw.admin_url .. "/health")
            return rr and rr.status == 503, "health still " .. tostring(rr and rr.status)
        end, h.timeout(3)))
        r = assert(http.get(gw.admin_url .. "/ready"))
        assert.equal(503, r.status)
        assert.is_true(r.json.draining)
        -- the call in flight is answered, then the gateway exits 0
        assert.equal(0, slow:wait_exit(h.timeout(10)))
        assert.equal('{"jsonrpc":"2.0","result":"late","id":1}', slow:output())
        assert.equal(0, gw:wait_exit(h.timeout(10)))
    end)

    it("/ready flips to 503 naming the service when its upstream dies, and back when it returns", function()
        local up = assert(h.start_upstream())
        local gw = http.start(h.demo_config(up))
        assert(h.retry(function()
            local r = http.get(gw.admin_url .. "/ready")
            return r and r.status == 200, "not ready: " .. tostring(r and r.body)
        end))
        local port = up.port
        up:stop()
        local r = assert(h.retry(function()
            local rr = http.get(gw.admin_url .. "/ready")
            return rr and rr.status == 503 and rr, "still ready"
        end, h.timeout(5)))
        assert.is_false(r.json.ready)
        assert.equal(1, #r.json.not_ready)
        assert.equal("demo", r.json.not_ready[1].service)
        assert.same({ "tcp://127.0.0.1:" .. port }, r.json.not_ready[1].upstreams)
        -- the upstream comes back on its port: the gateway reconnects and is ready again
        assert(h.start_upstream({ listen = "tcp://127.0.0.1:" .. port }))
        assert(h.retry(function()
            local rr = http.get(gw.admin_url .. "/ready")
            return rr and rr.status == 200, "not ready again"
        end, h.timeout(10)))
    end)

    it("answers GET and HEAD only, and 404 for other paths", function()
        local gw = http.start({ services = {} })
        local r = assert(http.curl({ "-X", "POST", gw.admin_url .. "/metrics" }))
        assert.equal(405, r.status)
        r = assert(http.get(gw.admin_url .. "/nothing"))
        assert.equal(404, r.status)
        r = assert(http.curl({ "-I", gw.admin_url .. "/health" }))
        assert.equal(200, r.status)
        assert.equal("3", r.headers["content-length"])
        r = assert(http.get(gw.admin_url .. "/ready"))
        assert.equal(200, r.status) -- no service: nothing to wait for
    end)
end)
