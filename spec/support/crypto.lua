-- spec/support/crypto.lua -- SHA-256 and HMAC-SHA256 for the specs, from libcrypto through the
-- LuaJIT FFI: the same primitives the gateway's `ghost.host` gives ghost.auth, so specs can
-- mint tokens (expired ones too) and build a fake core for the authenticator.
local ffi = require "ffi"

local byte, format, gsub = string.byte, string.format, string.gsub

ffi.cdef [[
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
unsigned char *HMAC(const void *evp_md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *md, unsigned int *md_len);
const void *EVP_sha256(void);
]]

local _M = {}

local lib
for _, name in ipairs({ "crypto", "libcrypto.so.3", "libcrypto.so.1.1" }) do
    local ok, l = pcall(ffi.load, name)
    if ok then
        lib = l
        break
    end
end
assert(lib, "spec/support/crypto.lua: libcrypto not found")

local md = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")

local function hex(s)
    return (gsub(s, ".", function(c)
        return format("%02x", byte(c))
    end))
end

function _M.sha256_hex(s)
    lib.SHA256(s, #s, md)
    return hex(ffi.string(md, 32))
end

function _M.hmac_sha256_hex(key, s)
    lib.HMAC(lib.EVP_sha256(), key, #key, s, #s, md, md_len)
    return hex(ffi.string(md, md_len[0]))
end

-- Not constant time: the specs only need the answer.
function _M.consttime_eq(a, b)
    return a == b
end

-- An HMAC token as `ghostgate token` makes it, expiring at `expires` (unix seconds).
function _M.token(secret, identity, expires, scopes)
    local body = format("gg1:%s:%d:%s", identity, expires, scopes or "")
    return body .. ":" .. _M.hmac_sha256_hex(secret, body)
end

return _M
