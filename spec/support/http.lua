-- spec/support/http.lua -- HTTP for the specs of the JSON-RPC front door and the admin endpoint:
-- a gateway with HTTP listeners, curl (a child process of the test kit, stopped by PID), a raw
-- HTTP/1.1 client on luv for what curl will not send, a Prometheus text parser.
--
--   start(config, opts) -> gw with gw.rpc_url, gw.http ("host:port"), gw.admin_url, gw.admin
--   curl(args, opts) -> {status, headers, body, json, code, output} or nil, err
--   rpc(gw, payload, opts) -> the same, payload a Lua table (JSON-encoded) or a string
--   get(url, opts) -> the same, for GET
--   raw(addr) -> c: send(bytes), wait_responses(n, timeout), wait_closed(timeout), close();
--                fields responses ({status, headers, body}), closed
--   metrics(text) -> samples; sample(samples, name, labels) -> value or nil
--   cleanup()  (after_each, with helpers.cleanup)
local uv = require "luv"
local cjson = require "cjson.safe"
local h = require "spec.support.helpers"

local assert = assert
local ipairs = ipairs
local pairs = pairs
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local concat = table.concat
local format = string.format

local _M = {}

_M.null = cjson.null
local raws = {}

local function addr_of(line)
    local tcp = line and line:match("listen=tcp://(%S+)")
    assert(tcp, "no tcp address in '" .. tostring(line) .. "'")
    return tcp
end

-- Start a gateway with a JSON-RPC front door and an admin endpoint on free loopback ports
-- (config.http / config.admin as given override them; http = false or admin = false leaves
-- one out). The ports come from the gateway's http_listening log lines.
function _M.start(config, opts)
    local cfg = {}
    for k, v in pairs(config) do
        cfg[k] = v
    end
    if cfg.http == nil then
        cfg.http = { listen = "127.0.0.1:0" }
    elseif cfg.http == false then
        cfg.http = nil
    end
    if cfg.admin == nil then
        cfg.admin = { listen = "127.0.0.1:0" }
    elseif cfg.admin == false then
        cfg.admin = nil
    end
    local gw = assert(h.start_gateway(cfg, opts))
    if cfg.http then
        gw.http = addr_of(assert(gw:wait_log("http_listening kind=jsonrpc ", h.timeout(2))))
        gw.rpc_url = "http://" .. gw.http .. (cfg.http.path or "/rpc")
    end
    if cfg.admin then
        gw.admin = addr_of(assert(gw:wait_log("http_listening kind=admin ", h.timeout(2))))
        gw.admin_url = "http://" .. gw.admin
    end
    return gw
end

-- Split "HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody" (curl -i output) into status, headers, body; 1xx
-- heads (100 Continue) are skipped.
local function parse_response(out)
    local pos = 1
    while true do
        local head_end = out:find("\r\n\r\n", pos, true)
        if not head_end then
            return nil, "no HTTP head in curl output: " .. out:sub(1, 200)
        end
        local head = out:sub(pos, head_end - 1)
        local status = tonumber(head:match("^HTTP/%d%.%d (%d%d%d)"))
        if not status then
            return nil, "bad status line in curl output: " .. head:sub(1, 200)
        end
        pos = head_end + 4
        if status >= 200 then
            local headers = {}
            for name, value in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do
                headers[name:lower()] = value
            end
            return status, headers, out:sub(pos)
        end
    end
end

-- Run curl with args (a list) plus -sS -i --max-time. Returns {status, headers (lower-cased
-- names), body, json (decoded body, or nil), code (curl's exit status), output} or nil, err.
function _M.curl(args, opts)
    opts = opts or {}
    local argv = { "-sS", "-i", "--max-time", tostring(opts.max_time or h.timeout(10)) }
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    local r, err = h.run("curl", argv, { timeout = opts.max_time and opts.max_time + 5 or h.timeout(15) })
    if not r then
        return nil, err
    end
    if r.code ~= 0 then
        return nil, format("curl exited %d: %s", r.code, r.stderr)
    end
    -- the kit splits output on \n and drops the last one: put them back
    local out = concat(r.proc.stdout, "\n")
    if out:sub(-1) == "\r" then
        out = out .. "\n"
    end
    local status, headers, body = parse_response(out)
    if not status then
        return nil, headers
    end
    return { status = status, headers = headers, body = body, json = cjson.decode(body), code = r.code,
             output = out }
end

-- POST a JSON-RPC payload (a table, JSON-encoded; or a string sent as is) to gw.rpc_url.
-- opts: headers (list of "Name: value"), url, content_type (default application/json).
function _M.rpc(gw, payload, opts)
    opts = opts or {}
    local body = type(payload) == "string" and payload or assert(cjson.encode(payload))
    local args = { "-H", "Content-Type: " .. (opts.content_type or "application/json"),
                   "--data-binary", body }
    for _, hd in ipairs(opts.headers or {}) do
        args[#args + 1] = "-H"
        args[#args + 1] = hd
    end
    args[#args + 1] = opts.url or gw.rpc_url
    return _M.curl(args, opts)
end

function _M.get(url, opts)
    return _M.curl({ url }, opts)
end

-- A JSON-RPC 2.0 request object.
function _M.req(id, method, params)
    return { jsonrpc = "2.0", id = id, method = method, params = params }
end

---------------------------------------------------------------------------------------------
-- A raw HTTP/1.1 client: bytes out as given, responses parsed by Content-Length.

local Raw = {}
Raw.__index = Raw

function _M.raw(hostport)
    local host, port = hostport:match("^(.+):(%d+)$")
    local tcp = uv.new_tcp()
    local self = setmetatable({ tcp = tcp, buf = "", responses = {}, closed = false }, Raw)
    local done, cerr = false, nil
    assert(tcp:connect(host, tonumber(port), function(e)
        done, cerr = true, e
    end))
    if not h.await(function()
        return done
    end, h.timeout(5)) or cerr then
        tcp:close()
        return nil, "connect " .. hostport .. ": " .. tostring(cerr or "timeout")
    end
    tcp:read_start(function(err, data)
        if data then
            self.buf = self.buf .. data
            self:_parse()
        else
            self.closed = true
            self.close_reason = err or "eof"
            if not tcp:is_closing() then
                tcp:close()
            end
        end
    end)
    raws[#raws + 1] = self
    return self
end

function Raw:_parse()
    while true do
        local head_end = self.buf:find("\r\n\r\n", 1, true)
        if not head_end then
            return
        end
        local head = self.buf:sub(1, head_end - 1)
        local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
        local headers = {}
        for name, value in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do
            headers[name:lower()] = value
        end
        local len = tonumber(headers["content-length"] or "0") or 0
        if #self.buf < head_end + 3 + len then
            return
        end
        local body = self.buf:sub(head_end + 4, head_end + 3 + len)
        self.buf = self.buf:sub(head_end + 4 + len)
        if not status or status >= 200 then
            self.responses[#self.responses + 1] = { status = status, headers = headers, body = body,
                                                    json = cjson.decode(body), time = h.now() }
        end
    end
end

function Raw:send(bytes)
    if self.closed then
        return nil, "closed"
    end
    return self.tcp:write(bytes)
end

-- Wait until n responses have arrived. Returns the list or nil, err.
function Raw:wait_responses(n, timeout)
    h.await(function()
        return #self.responses >= n or self.closed
    end, timeout or h.timeout(5))
    if #self.responses >= n then
        return self.responses
    end
    return nil, format("%d of %d responses (%s)", #self.responses, n,
        self.closed and "closed: " .. tostring(self.close_reason) or "timeout")
end

function Raw:wait_closed(timeout)
    return h.await(function()
        return self.closed
    end, timeout or h.timeout(5))
end

function Raw:close()
    self.closed = true
    if not self.tcp:is_closing() then
        self.tcp:close()
    end
end

-- An HTTP/1.1 POST of a JSON body (a table or a string) to path, as bytes.
function _M.post_bytes(path, payload, extra_headers)
    local body = type(payload) == "string" and payload or assert(cjson.encode(payload))
    return format("POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n%s"
        .. "Content-Length: %d\r\n\r\n%s",
        path, extra_headers or "", #body, body)
end

---------------------------------------------------------------------------------------------
-- Prometheus text format

-- Parse the text into a list of {name, labels = {k = v}, value}. Comment lines are skipped;
-- a line that is neither a comment nor a sample raises.
function _M.metrics(text)
    local out = {}
    for line in text:gmatch("[^\n]+") do
        if line:sub(1, 1) ~= "#" then
            local name, labels, value = line:match("^([%w_:]+){(.*)} (%S+)$")
            if not name then
                name, value = line:match("^([%w_:]+) (%S+)$")
                labels = ""
            end
            assert(name, "not a Prometheus sample line: " .. line)
            local t = {}
            for k, v in labels:gmatch('([%w_]+)="([^"]*)"') do
                t[k] = v
            end
            out[#out + 1] = { name = name, labels = t, value = assert(tonumber(value), line) }
        end
    end
    return out
end

-- The value of the sample called name whose labels include every label given, or nil.
function _M.sample(samples, name, labels)
    for _, s in ipairs(samples) do
        if s.name == name then
            local ok = true
            for k, v in pairs(labels or {}) do
                if s.labels[k] ~= tostring(v) then
                    ok = false
                    break
                end
            end
            if ok then
                return s.value
            end
        end
    end
end

function _M.cleanup()
    for _, c in ipairs(raws) do
        c:close()
    end
    raws = {}
end

return _M
