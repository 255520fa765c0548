-- ghost.consts: the constants C and Lua share (error codes and types, policy verdicts, the
-- adapter protocol) are written once, in C (gateway/core/errors.h, gateway/lua/lua_consts.h),
-- and exported to Lua. These specs check the export against the docs and make sure no Lua file
-- of lua/ghost/ or policies/ writes one of those numbers again.
local lfs = require "lfs"

local so_path = (os.getenv("GG_BUILD") or "build") .. "/lua/?.so;"
if not package.cpath:find(so_path, 1, true) then package.cpath = so_path .. package.cpath end
local consts = require "ghost.consts"

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- src with its comments and the contents of its strings blanked (newlines kept, so line
-- numbers stay): what is left is code.
local function strip(src)
    local out, i, n = {}, 1, #src
    local function blank(a, b)
        out[#out + 1] = (src:sub(a, b):gsub("[^\n]", " "))
    end
    while i <= n do
        local c = src:sub(i, i)
        local eq = c == "[" and src:match("^%[(=*)%[", i)
        if c == "-" and src:sub(i + 1, i + 1) == "-" then
            local leq = src:match("^%[(=*)%[", i + 2)
            local j
            if leq then
                j = select(2, src:find("]" .. leq .. "]", i + 2, true)) or n
            else
                j = (src:find("\n", i, true) or n + 1) - 1
            end
            blank(i, j)
            i = j + 1
        elseif eq then
            local j = select(2, src:find("]" .. eq .. "]", i, true)) or n
            blank(i, j)
            i = j + 1
        elseif c == '"' or c == "'" then
            local j = i + 1
            while j <= n do
                local d = src:sub(j, j)
                if d == "\\" then
                    j = j + 2
                elseif d == c or d == "\n" then
                    break
                else
                    j = j + 1
                end
            end
            out[#out + 1] = c
            blank(i + 1, j - 1)
            out[#out + 1] = c
            i = j + 1
        else
            out[#out + 1] = c
            i = i + 1
        end
    end
    return table.concat(out)
end

local error_code = {}
for _, code in pairs(consts.errors) do error_code[code] = true end

-- Names that hold a verdict or an adapter op code in Lua.
local shared_name = {}
for name in pairs(consts.verdicts) do shared_name[name] = true end
for name in pairs(consts.adapter) do shared_name[name] = true end

-- The places in `src` (named `file`) that write a shared constant by number: an error code
-- anywhere in the code (a policy's `priority = 500` is a priority, not a code), or a number
-- assigned to a verdict or op-code name.
local function offenders(file, src)
    local found = {}
    local lineno = 0
    for line in (strip(src) .. "\n"):gmatch("([^\n]*)\n") do
        lineno = lineno + 1
        for pos, tok in line:gmatch("()([%w_%.]+)") do
            if tok:match("^%d+$") and error_code[tonumber(tok)]
                and not line:sub(1, pos - 1):match("priority%s*=%s*$") then
                found[#found + 1] = ("%s:%d: error code %s written as a number"):format(file, lineno, tok)
            end
        end
        local lhs, rhs = line:match("^(.-[^=~<>])=([^=].*)$")
        if lhs then
            for name in lhs:gmatch("[%w_]+") do
                if shared_name[name] and rhs:match("%f[%w_.]%d+%f[^%w_.]") then
                    found[#found + 1] = ("%s:%d: %s assigned a number"):format(file, lineno, name)
                end
            end
        end
    end
    return found
end

local function lua_files(dir)
    local files = {}
    for name in lfs.dir(dir) do
        if name:match("%.lua$") then files[#files + 1] = dir .. "/" .. name end
    end
    table.sort(files)
    return files
end

describe("ghost.consts", function()
    it("has every gateway error of docs/protocol.md's table, with its code and type", function()
        local documented = {}
        for code, typ in read("docs/protocol.md"):gmatch("\n| (%d%d%d) +| `([%w_]+)` +|") do
            documented[typ] = tonumber(code)
        end
        assert.is_not_nil(next(documented))
        assert.same(documented, consts.errors)
        for typ, code in pairs(consts.errors) do
            assert.equal(typ, consts.error_types[code])
        end
    end)

    it("gives the verdicts and the adapter protocol the C core uses, each value once per group", function()
        assert.same({ CONTINUE = 0, REJECT = 1, RESPOND = 2, RESPOND_RAW = 3, RETRY = 4, ERROR = 5 },
            consts.verdicts)
        local a = consts.adapter
        for _, group in ipairs({ { "OP_CALL", "OP_HTTP" }, { "R_OK", "R_REMOTE", "R_GATEWAY", "R_LOCAL" },
                                 { "DONE", "FAILED", "GATEWAY_FAILED" } }) do
            local seen = {}
            for _, name in ipairs(group) do
                assert.is_number(a[name], name)
                assert.is_nil(seen[a[name]], name)
                seen[a[name]] = true
            end
        end
    end)

    it("is the table ghost.policy and ghost.errors use", function()
        package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
        assert.equal(consts.errors, require("ghost.policy").codes)
        local codes = require("ghost.errors").codes
        for typ, code in pairs(consts.errors) do assert.equal(code, codes[typ], typ) end
        assert.equal(consts.errors.internal, codes.runtime_error)
    end)
end)

describe("Lua files of lua/ghost/ and policies/", function()
    it("write no error code, verdict or adapter op code as a number", function()
        local found = {}
        for _, dir in ipairs({ "lua/ghost", "policies" }) do
            for _, file in ipairs(lua_files(dir)) do
                for _, o in ipairs(offenders(file, read(file))) do found[#found + 1] = o end
            end
        end
        assert.same({}, found)
    end)

    it("are checked by a scan that finds numbers where names belong, not in comments or strings", function()
        assert.same({ "x.lua:2: error code 502 written as a number" },
            offenders("x.lua", "-- 502 in a comment\nif outcome.code ~= 502 then return end\n"))
        assert.same({ "x.lua:1: error code 429 written as a number" },
            offenders("x.lua", "return ctx:reject(429, 'over 500 calls')"))
        assert.same({ "x.lua:1: CONTINUE assigned a number", "x.lua:1: REJECT assigned a number" },
            offenders("x.lua", "local CONTINUE, REJECT = 0, 1"))
        assert.same({ "x.lua:1: OP_CALL assigned a number" }, offenders("x.lua", "local OP_CALL = 1"))
        assert.same({},
            offenders("x.lua", "--[[ 500 ]] local s = [[504]] priority = 500\nif a == 0 then end"))
    end)
end)
