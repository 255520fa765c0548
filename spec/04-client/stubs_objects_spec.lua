-- Editor stubs for remote objects (docs/client.md#editor-stubs): a service declares the
-- interfaces of the objects it hands out (services.<name>.interfaces) and which methods return
-- one (returns); sys.describe lists them and `ghostgate stubs` writes a class per interface.
-- Real ghostgate, real backend.
local h = require "spec.support.helpers"

local FILES = "spec/04-client/backends/files.lua"

describe("Editor stubs of object interfaces", function()
    after_each(h.cleanup)

    local function start(guard)
        local f = h.setup_ghost({ files = { script = FILES, objects = true,
            methods = { open = { "name: string" }, live = {} },
            interfaces = { File = { write = { "s: string" }, count = {}, slow = { "seconds: number" } } },
            returns = { open = "File" },
            policies = guard and { guard } or nil } })
        return f
    end

    it("writes a class per interface and types the methods that return one", function()
        local f = start()
        local d = f.gw:call("sys.describe").files
        assert.same({ "s" }, d.interfaces.File.write.names)
        assert.equal("File", d.returns.open)
        local file = f.gw.files.open("a.txt") -- the declared interface is what the backend has
        assert.equal(1, file:write("x"))
        f.gw:close()
        local dir = h.tmpdir() .. "/stubs"
        local r = assert(h.run(h.bin("ghostgate"), { "stubs", "-a", f.gateway.addr, "-o", dir }))
        assert.equal(0, r.code, r.output)
        local text = assert(h.read_file(dir .. "/ghost_services.lua"))
        assert.matches("---@field open fun(name: string): ghost.objects.files.File\n", text, 1, true)
        assert.matches("---@field live fun(): any\n", text, 1, true)
        assert.matches("---@class ghost.objects.files.File: ghost.Object\n"
            .. "---@field count fun(self: ghost.objects.files.File): any\n"
            .. "---@field slow fun(self: ghost.objects.files.File, seconds: number): any\n"
            .. "---@field write fun(self: ghost.objects.files.File, s: string): any\n", text, 1, true)
        local bc = assert(h.run("luajit", { "-bl", dir .. "/ghost_services.lua" }))
        assert.equal(0, bc.code, bc.output)
        assert.is_table(assert(loadfile(dir .. "/ghost_services.lua"))())
    end)

    it("lists only the object methods the service's guard lets through", function()
        local f = start({ name = "guard", objects = { "count", "write" } })
        local names = {}
        for k in pairs(f.gw:call("sys.describe").files.interfaces.File) do names[#names + 1] = k end
        table.sort(names)
        assert.same({ "count", "write" }, names)
        f.gw:close()
    end)

    it("refuses a returns entry naming no declared interface", function()
        local path = h.tmpdir() .. "/gw.lua"
        assert(h.write_file(path, [[
return { services = { files = { upstream = "tcp://127.0.0.1:9002", objects = true,
    interfaces = { File = { count = {} } }, returns = { open = "Dir" } } } }
]]))
        local r = assert(h.run(h.bin("ghostgate"), { "check", "-c", path }))
        assert.equal(1, r.code, r.output)
        assert.equal("ghostgate: " .. path .. ":2: services.files: returns.open: no interface "
            .. "'Dir' is declared in interfaces", r.stderr)
    end)
end)
