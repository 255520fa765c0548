-- spec/support/tls.lua -- TLS peers for specs: throwaway certificates made with Debian's
-- openssl command into a temp dir of the kit (P-256 keys: cheap handshakes), and
-- `openssl s_client` as a real TLS client.
--
-- tls.certs() -> t with file names: ca, ca_key; server, server_key (CN=localhost, SANs
-- localhost and 127.0.0.1); client, client_key (CN=billing); reporting, reporting_key
-- (CN=reporting); expired (CN=billing, 2020); other_ca; server2, server2_key (like server,
-- signed by other_ca); stranger, stranger_key (CN=billing, signed by other_ca); dir.
local helpers = require "spec.support.helpers"

local format = string.format
local assert = assert

local _M = {}

local function openssl(args, dir)
    local r = helpers.run("openssl", args, { cwd = dir })
    assert(r.code == 0, "openssl " .. table.concat(args, " ") .. ": " .. r.output)
end

local function ca(dir, name)
    openssl({ "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-days", "2", "-subj", "/CN=" .. name, "-addext", "basicConstraints=critical,CA:TRUE",
              "-keyout", name .. ".key", "-out", name .. ".pem" }, dir)
end

-- A leaf signed by ca_name: subject CN=cn, optional SAN text.
local function leaf(dir, ca_name, file, cn, san)
    local req = { "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-subj", "/CN=" .. cn, "-keyout", file .. ".key", "-out", file .. ".csr" }
    if san then
        req[#req + 1] = "-addext"
        req[#req + 1] = "subjectAltName=" .. san
    end
    openssl(req, dir)
    openssl({ "x509", "-req", "-in", file .. ".csr", "-CA", ca_name .. ".pem", "-CAkey",
              ca_name .. ".key", "-CAcreateserial", "-days", "2", "-copy_extensions", "copy",
              "-out", file .. ".pem" }, dir)
end

function _M.certs()
    local dir = helpers.tmpdir()
    ca(dir, "ca")
    ca(dir, "other_ca")
    leaf(dir, "ca", "server", "localhost", "DNS:localhost,IP:127.0.0.1")
    leaf(dir, "other_ca", "server2", "localhost", "DNS:localhost,IP:127.0.0.1")
    leaf(dir, "ca", "client", "billing")
    leaf(dir, "ca", "reporting", "reporting")
    leaf(dir, "other_ca", "stranger", "billing")
    -- An expired client certificate: `openssl ca` is the command that takes explicit dates.
    assert(helpers.write_file(dir .. "/index.txt", ""))
    assert(helpers.write_file(dir .. "/serial", "01\n"))
    assert(helpers.write_file(dir .. "/ca.cnf", "[ca]\ndefault_ca = gg\n[gg]\ndatabase = index.txt\n"
        .. "new_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = any\n"
        .. "[any]\ncommonName = supplied\n"))
    openssl({ "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
              "-in", "client.csr", "-out", "expired.pem", "-startdate", "20200101000000Z",
              "-enddate", "20200102000000Z", "-notext" }, dir)
    local function f(n) return format("%s/%s", dir, n) end
    return {
        dir = dir, ca = f("ca.pem"), ca_key = f("ca.key"), other_ca = f("other_ca.pem"),
        server = f("server.pem"), server_key = f("server.key"),
        server2 = f("server2.pem"), server2_key = f("server2.key"),
        client = f("client.pem"), client_key = f("client.key"),
        reporting = f("reporting.pem"), reporting_key = f("reporting.key"),
        expired = f("expired.pem"),
        stranger = f("stranger.pem"), stranger_key = f("stranger.key"),
    }
end

-- Run `openssl s_client` against 127.0.0.1:port, send the MessagePack-RPC request
-- [0, 1, method, params] and keep reading. opts: ca (default certs.ca), cert, key, alpn
-- (default "msgpack-rpc", false: none), name (checked against the server's certificate,
-- default "localhost"), flush (see answer). Returns the process: its stderr has the -brief summary ("Protocol
-- version: TLSv1.3", "ALPN protocol: ..."), its stdout the answer.
function _M.s_client(port, certs, method, params, opts)
    opts = opts or {}
    local args = { "s_client", "-connect", "127.0.0.1:" .. port, "-CAfile", opts.ca or certs.ca,
                   "-verify_return_error", "-verify_hostname", opts.name or "localhost",
                   "-brief", "-ign_eof" }
    if opts.alpn ~= false then
        args[#args + 1] = "-alpn"
        args[#args + 1] = opts.alpn or "msgpack-rpc"
    end
    if opts.cert then
        args[#args + 1] = "-cert"
        args[#args + 1] = opts.cert
        args[#args + 1] = "-key"
        args[#args + 1] = opts.key
    end
    local stdin = method and helpers.mp.encode({ 0, 1, method, params or {} }) or ""
    if opts.flush then stdin = stdin .. helpers.mp.encode({ 0, 2, opts.flush, { "\n" } }) end
    return assert(helpers.spawn("openssl", args, { name = "s_client", stdin = stdin }))
end

-- The answer to request 1 an s_client process read: [1, id, err, result] decoded, or nil and why.
-- The kit reads a process's stdout by lines, so an answer is seen once a "\n" follows it: pass
-- opts.flush to s_client (a method that echoes its argument) to have one sent after it.
local function read(p)
    if #p.stdout == 0 then return nil end
    local s = table.concat(p.stdout, "\n") .. "\n"
    local pos = 1
    while pos <= #s do -- answers may come in any order: the one to request 1
        local stop = helpers.mp.frame(s, pos)
        if not stop then return nil end
        local msg = helpers.mp.decode(s:sub(pos, stop - 1))
        if type(msg) == "table" and msg[2] == 1 then return msg end
        pos = stop
    end
end

function _M.answer(p, timeout)
    local ok = helpers.await(function()
        return read(p) or p.exited
    end, timeout or helpers.timeout(5))
    if not ok then return nil, "timeout" end
    local msg = read(p)
    if not msg then return nil, "s_client exited: " .. p:output() end
    return msg
end

return _M
