-- The ext type numbers of remote objects are configurable (docs/configuration.md#objects,
-- docs/protocol.md#ext-types): a gateway with `objects = { ext = {...} }` and Lua peers with
-- the same ghost.ext_types{...} route objects and promises as with the defaults; numbers out
-- of 3..127 or used twice are refused by `ghostgate check`. Real processes.
local h = require "spec.support.helpers"

local FILES = "spec/04-client/backends/files.lua"
local EXT = "{ object = 70, yours = 71, promise = 72 }"

local function ghostgate(args)
    return assert(h.run(h.bin("ghostgate"), args, { timeout = h.timeout(10) }))
end

describe("Configured ext types of remote objects", function()
    after_each(h.cleanup)

    it("route objects, attributes and promises between a gateway and Lua peers that agree", function()
        local uv = require "luv"
        local b = assert(h.start_backend(([[
            local ghost = require "ghost"
            ghost.ext_types(%s)
            dofile(%q)
        ]]):format(EXT, uv.cwd() .. "/" .. FILES), { "tcp://127.0.0.1:0" }, { name = "files" }))
        local gateway = assert(h.start_gateway(([[
            return { listen = "tcp://127.0.0.1:0", drain_timeout = 2, objects = { ext = %s },
                     services = { files = { upstream = %q, objects = true } } }
        ]]):format(EXT, b.addr)))
        local client = [[
            local ghost = require "ghost"
            ghost.ext_types(%s)
            local gw = assert(ghost.connect(arg[1], { timeout = 10 }))
            local f = gw.files.open("a.txt")
            print(ghost.is_remote(f), f:write("x"), f:count(), f.name,
                gw.files.open:promise("b.txt"):count())
        ]]
        local r = assert(h.run_lua(client:format(EXT), { gateway.addr }))
        assert.equal(0, r.code, r.output)
        assert.equal("true\t1\t1\ta.txt\t0", r.stdout)
        -- a client on the defaults does not take part: the gateway's ext 70 is data to it
        r = assert(h.run_lua(client:format("{}"), { gateway.addr }))
        assert.equal(1, r.code, r.output)
        assert.matches("attempt to call method 'write'", r.output, 1, true)
    end)

    it("must be distinct and within 3..127: ghostgate check says which", function()
        local dir = h.tmpdir()
        local cases = {
            { "{ object = 1 }", "objects.ext.object: must be at least 3" },
            { "{ promise = 128 }", "objects.ext.promise: must be at most 127" },
            { "{ object = 65 }",
              "objects.ext: ext types must be distinct (object = 65, yours = 65, promise = 66)" },
        }
        for i, case in ipairs(cases) do
            local path = dir .. "/gw" .. i .. ".lua"
            assert(h.write_file(path, ("return { objects = { ext = %s } }\n"):format(case[1])))
            local r = ghostgate({ "check", "-c", path })
            assert.equal(1, r.code, r.output)
            assert.equal("ghostgate: " .. path .. ":1: " .. case[2], r.stderr)
        end
        local path = dir .. "/ok.lua"
        assert(h.write_file(path, "return { objects = { ext = " .. EXT .. " } }\n"))
        assert.equal(0, ghostgate({ "check", "-c", path }).code)
    end)
end)
