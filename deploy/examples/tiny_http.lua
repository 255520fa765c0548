-- tiny_http: a very small HTTP/1.1 server on luv, for the examples of docs/legacy.md and for the
-- specs. It reads requests with Content-Length bodies, keeps connections alive, answers one
-- request at a time per connection. Not for production: it exists so that the examples need
-- nothing beyond Debian's lua-luv and lua-cjson.
--
--   local tiny = require "tiny_http"
--   local srv = tiny.serve("127.0.0.1", 0, function(req)
--       -- req: method, path, query, headers (lowercase names), body, peer
--       return 200, "hello", { ["Content-Type"] = "text/plain" }
--   end, { idle_timeout = 5 })
--   print(srv.port); uv.run()
--
-- A handler may instead return a table: { hang = true } (answer later with req.peer.respond,
-- or never), { raw = "bytes", close = true } (write bytes as they are, then maybe close),
-- { close = true } (close at once).
local uv = require "luv"

local type, tonumber, pairs, ipairs, pcall, tostring = type, tonumber, pairs, ipairs, pcall, tostring
local format, find, sub, lower, match = string.format, string.find, string.sub, string.lower,
    string.match
local concat = table.concat

local _M = {}

local REASONS = {
    [200] = "OK", [201] = "Created", [204] = "No Content", [400] = "Bad Request",
    [404] = "Not Found", [405] = "Method Not Allowed", [413] = "Payload Too Large",
    [500] = "Internal Server Error", [501] = "Not Implemented", [503] = "Service Unavailable",
}

local MAX_HEAD, MAX_BODY = 64 * 1024, 16 * 1024 * 1024

local function response(status, body, headers, close)
    body = body or ""
    local lines = { format("HTTP/1.1 %d %s", status, REASONS[status] or "Status") }
    local has_type = false
    for k, v in pairs(headers or {}) do
        if lower(k) == "content-type" then has_type = true end
        lines[#lines + 1] = k .. ": " .. v
    end
    if not has_type and body ~= "" then lines[#lines + 1] = "Content-Type: text/plain" end
    lines[#lines + 1] = "Content-Length: " .. #body
    if close then lines[#lines + 1] = "Connection: close" end
    return concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

-- Parse the head of a request: method, target, version, headers. nil when malformed.
local function parse_head(head)
    local method, target, version = match(head, "^(%u+) (%S+) HTTP/1%.(%d)\r\n")
    if not method then return nil end
    local headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
        headers[lower(name)] = value
    end
    local path, query = match(target, "^([^?]*)%??(.*)$")
    return { method = method, target = target, path = path, query = query,
             version = tonumber(version), headers = headers }
end

local function serve_conn(server, client, handler)
    local buf, busy, closed = "", false, false
    local conn = { handle = client }
    server.conns[client] = true
    local idle_timer

    local function close()
        if closed then return end
        closed = true
        server.conns[client] = nil
        if idle_timer and not idle_timer:is_closing() then idle_timer:close() end
        if not client:is_closing() then client:close() end
    end
    conn.close = close

    local function arm_idle()
        if not server.idle_timeout then return end
        if not idle_timer then idle_timer = uv.new_timer() end
        idle_timer:stop()
        idle_timer:start(server.idle_timeout * 1000, 0, close)
    end

    local process
    local function finish(status, body, headers, keep)
        if closed then return end
        client:write(response(status, body, headers, not keep))
        if not keep then
            client:shutdown(close)
            return
        end
        busy = false
        arm_idle()
        process()
    end

    -- A handler that returned { hang = true } may answer later: req.peer.respond(status, body,
    -- headers) writes it and goes on with the connection's next request.
    function conn.respond(status, body, headers)
        if busy then finish(status, body, headers, true) end
    end

    process = function()
        while not busy and not closed do
            local stop = find(buf, "\r\n\r\n", 1, true)
            if not stop then
                if #buf > MAX_HEAD then finish(413, "head too large", nil, false) end
                return
            end
            local req = parse_head(sub(buf, 1, stop + 1))
            if not req then return finish(400, "bad request", nil, false) end
            if req.headers["transfer-encoding"] then
                return finish(501, "chunked bodies are not supported here", nil, false)
            end
            local len = tonumber(req.headers["content-length"] or "0")
            if not len or len > MAX_BODY then return finish(413, "body too large", nil, false) end
            if #buf < stop + 3 + len then return end
            req.body = sub(buf, stop + 4, stop + 3 + len)
            buf = sub(buf, stop + 4 + len)
            req.peer = conn
            local keep = req.version == 1 and lower(req.headers.connection or "") ~= "close"
            busy = true
            if idle_timer then idle_timer:stop() end
            server.requests = server.requests + 1
            local ok, status, body, headers = pcall(handler, req)
            if not ok then
                finish(500, "handler error: " .. tostring(status), nil, keep)
            elseif type(status) == "table" then
                local act = status
                if act.raw then client:write(act.raw) end
                if act.close then
                    -- shutdown first: what was written goes out before the connection ends
                    client:shutdown(close)
                    return
                end
                if act.hang then return end -- busy stays true: nothing more on this connection
                busy = false
            else
                finish(status, body, headers, keep)
            end
        end
    end

    arm_idle()
    client:read_start(function(err, data)
        if err or not data then return close() end
        buf = buf .. data
        process()
    end)
end

--- serve(host, port, handler, opts) -> server { port, host, requests, accepted, close() }
-- opts.idle_timeout: seconds an idle keep-alive connection stays open (default: forever).
function _M.serve(host, port, handler, opts)
    opts = opts or {}
    local tcp = uv.new_tcp()
    assert(tcp:bind(host, port))
    local server = { tcp = tcp, conns = {}, requests = 0, accepted = 0, idle_timeout = opts.idle_timeout }
    assert(tcp:listen(128, function(err)
        if err then return end
        local client = uv.new_tcp()
        tcp:accept(client)
        server.accepted = server.accepted + 1
        serve_conn(server, client, handler)
    end))
    server.host = host
    server.port = tcp:getsockname().port
    function server.close()
        for c in pairs(server.conns) do
            if not c:is_closing() then c:close() end
        end
        if not tcp:is_closing() then tcp:close() end
    end
    return server
end

--- Options from the command line: --port N, --host H, --idle-timeout S.
function _M.args(argv)
    local o = { host = "127.0.0.1", port = 0 }
    local i = 1
    while argv and argv[i] do
        local a = argv[i]
        if a == "--port" then
            o.port = tonumber(argv[i + 1]); i = i + 1
        elseif a == "--host" then
            o.host = argv[i + 1]; i = i + 1
        elseif a == "--idle-timeout" then
            o.idle_timeout = tonumber(argv[i + 1]); i = i + 1
        elseif tonumber(a) then
            o.port = tonumber(a)
        end
        i = i + 1
    end
    return o
end

--- Run until SIGTERM/SIGINT, after printing "ready http://host:port" (what the specs wait for).
function _M.run(server, what)
    io.stdout:write(format("ready http://%s:%d %s\n", server.host, server.port, what or ""))
    io.stdout:flush()
    local function stop()
        server.close()
        uv.stop()
    end
    for _, name in ipairs({ "sigterm", "sigint" }) do
        local sig = uv.new_signal()
        sig:start(name, stop)
        uv.unref(sig)
    end
    uv.run()
    os.exit(0)
end

return _M
