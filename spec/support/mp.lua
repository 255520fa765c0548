-- spec/support/mp.lua -- MessagePack for the specs: lua-MessagePack for values, plus a byte-level
-- framer so a stream can be cut into whole messages without decoding (partial input is normal
-- on a socket) and so the raw bytes of each envelope element can be compared exactly.
--
-- Encoding rules (set once, for the whole test process):
--   Lua strings          -> str (str8/16/32), never bin
--   integral numbers     -> MessagePack integers (smallest unsigned/negative form)
--   other numbers        -> float64
--   tables 1..n          -> array; other tables -> map
--   _M.bin(s)            -> bin
--   _M.map(t)            -> map even when empty or array-like
--   _M.raw(bytes)        -> the bytes, verbatim (uint64, ext, hand-made encodings)
--   _M.null              -> nil inside an array
-- Decoding: str and bin both become Lua strings; integers beyond 2^53 lose precision (compare
-- raw bytes for those); ext values decode to nil.
local MessagePack = require "MessagePack"

local byte = string.byte
local char = string.char
local sub = string.sub
local format = string.format
local getmetatable = getmetatable
local setmetatable = setmetatable
local pairs = pairs
local pcall = pcall
local type = type
local error = error

local _M = {}

MessagePack.set_string("string")
MessagePack.set_integer("unsigned")
MessagePack.set_number("double")
MessagePack.set_array("without_hole")

local packers = MessagePack.packers
local BIN, MAP, RAW = {}, {}, {}

packers["table"] = function(buffer, t)
    local mt = getmetatable(t)
    if mt == BIN then
        packers["binary"](buffer, t[1])
    elseif mt == RAW then
        buffer[#buffer + 1] = t[1]
    elseif mt == MAP then
        local n = 0
        for _ in pairs(t) do
            n = n + 1
        end
        packers["map"](buffer, t, n)
    else
        packers["_table"](buffer, t)
    end
end

function _M.bin(s)
    if type(s) ~= "string" then
        error("mp.bin: string expected, got " .. type(s), 2)
    end
    return setmetatable({ s }, BIN)
end

function _M.raw(bytes)
    if type(bytes) ~= "string" then
        error("mp.raw: string expected, got " .. type(bytes), 2)
    end
    return setmetatable({ bytes }, RAW)
end

function _M.map(t)
    return setmetatable(t or {}, MAP)
end

_M.null = _M.raw("\192")

-- Encode one value (raises on values MessagePack cannot hold: functions, userdata).
function _M.encode(v)
    return MessagePack.pack(v)
end

-- Decode exactly one value; nil, err on malformed, truncated or trailing bytes.
function _M.decode(s)
    local ok, v = pcall(MessagePack.unpack, s)
    if not ok then
        return nil, v
    end
    return v
end

-- Per lead byte 0xc4..0xdf: size of the length field (n), payload shape.
--   "data": n-byte big-endian length then that many bytes; "ext": same plus one type byte;
--   "fixed": n bytes follow; "array"/"map": n-byte count of children.
local LONG = {
    [0xc4] = { 1, "data" }, [0xc5] = { 2, "data" }, [0xc6] = { 4, "data" },
    [0xc7] = { 1, "ext" }, [0xc8] = { 2, "ext" }, [0xc9] = { 4, "ext" },
    [0xca] = { 4, "fixed" }, [0xcb] = { 8, "fixed" },
    [0xcc] = { 1, "fixed" }, [0xcd] = { 2, "fixed" }, [0xce] = { 4, "fixed" }, [0xcf] = { 8, "fixed" },
    [0xd0] = { 1, "fixed" }, [0xd1] = { 2, "fixed" }, [0xd2] = { 4, "fixed" }, [0xd3] = { 8, "fixed" },
    [0xd4] = { 2, "fixed" }, [0xd5] = { 3, "fixed" }, [0xd6] = { 5, "fixed" }, [0xd7] = { 9, "fixed" },
    [0xd8] = { 17, "fixed" },
    [0xd9] = { 1, "data" }, [0xda] = { 2, "data" }, [0xdb] = { 4, "data" },
    [0xdc] = { 2, "array" }, [0xdd] = { 4, "array" },
    [0xde] = { 2, "map" }, [0xdf] = { 4, "map" },
}

local function be(s, p, n)
    local v = 0
    for i = p, p + n - 1 do
        v = v * 256 + byte(s, i)
    end
    return v
end

-- Find where the object starting at s[pos] ends, without decoding it (iterative: any depth).
-- Returns the index just past it; or nil, need when s is too short (need = the index that must
-- exist before trying again); or false, reason when the bytes are not MessagePack.
function _M.frame(s, pos)
    local len = #s
    local left = 1
    local p = pos
    while left > 0 do
        if p > len then
            return nil, p
        end
        local b = byte(s, p)
        left = left - 1
        if b <= 0x7f or b >= 0xe0 or b == 0xc0 or b == 0xc2 or b == 0xc3 then
            p = p + 1
        elseif b <= 0x8f then
            left = left + 2 * (b - 0x80)
            p = p + 1
        elseif b <= 0x9f then
            left = left + (b - 0x90)
            p = p + 1
        elseif b <= 0xbf then
            p = p + 1 + (b - 0xa0)
        elseif b == 0xc1 then
            return false, format("byte 0xc1 at offset %d", p - 1)
        else
            local n, kind = LONG[b][1], LONG[b][2]
            if kind == "fixed" then
                p = p + 1 + n
            else
                if p + n > len then
                    return nil, p + n
                end
                local v = be(s, p + 1, n)
                if kind == "data" then
                    p = p + 1 + n + v
                elseif kind == "ext" then
                    p = p + 2 + n + v
                elseif kind == "array" then
                    left = left + v
                    p = p + 1 + n
                else
                    left = left + 2 * v
                    p = p + 1 + n
                end
            end
        end
    end
    if p - 1 > len then
        return nil, p - 1
    end
    return p
end

-- Raw bytes of each element of the top-level array in the whole message s.
-- Returns a list of strings, or nil, err.
function _M.elements(s)
    local b = byte(s, 1)
    if not b then
        return nil, "empty"
    end
    local n, p
    if b >= 0x90 and b <= 0x9f then
        n, p = b - 0x90, 2
    elseif b == 0xdc and #s >= 3 then
        n, p = be(s, 2, 2), 4
    elseif b == 0xdd and #s >= 5 then
        n, p = be(s, 2, 4), 6
    else
        return nil, "not an array"
    end
    local out = {}
    for i = 1, n do
        local stop, err = _M.frame(s, p)
        if not stop then
            return nil, err or "truncated"
        end
        out[i] = sub(s, p, stop - 1)
        p = stop
    end
    return out
end

-- Hex dump, for failure messages.
function _M.hex(s)
    return (s:gsub(".", function(c)
        return format("%02x ", byte(c))
    end))
end

-- Encodings the specs need by hand.
function _M.uint64(hi32, lo32)
    local function u32(v)
        return char(math.floor(v / 0x1000000) % 256, math.floor(v / 0x10000) % 256,
            math.floor(v / 0x100) % 256, v % 256)
    end
    return _M.raw("\207" .. u32(hi32) .. u32(lo32))
end

function _M.int64(hi32, lo32)
    local r = _M.uint64(hi32, lo32)
    r[1] = "\211" .. sub(r[1], 2)
    return r
end

return _M
