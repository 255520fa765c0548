-- gateway/'s layers (docs/architecture.md): core -> lua -> proxy -> http -> upstreams -> cli.
-- A file may include only its own folder and the folders to its left; proxy/ reaches the
-- HTTP side and the upstream protocols only through what cli/main.c registers
-- (gg_run_opts.front and gg_run_opts.upstreams).
local RANK = { core = 0, lua = 1, proxy = 2, http = 3, upstreams = 4, cli = 5 }

local function sources()
    local list = {}
    local p = assert(io.popen("ls gateway/*/*.c gateway/*/*.h"))
    for path in p:lines() do list[#list + 1] = path end
    p:close()
    assert(#list > 0, "run from the repository root")
    return list
end

local function read(path)
    local f = assert(io.open(path, "rb"))
    local text = f:read("*a")
    f:close()
    return text
end

describe("gateway/ layers", function()
    it("every include is folder-qualified and points to the file's own folder or one below it", function()
        local bad = {}
        for _, path in ipairs(sources()) do
            local folder = path:match("^gateway/([^/]+)/")
            assert(RANK[folder], "a folder outside the layers: " .. path)
            for inc in read(path):gmatch('#%s*include%s+"([^"]+)"') do
                local to = inc:match("^([^/]+)/")
                if not RANK[to] then
                    bad[#bad + 1] = path .. " -> " .. inc .. " (not folder-qualified)"
                elseif RANK[to] > RANK[folder] then
                    bad[#bad + 1] = path .. " -> " .. inc .. " (points up)"
                end
            end
        end
        assert.same({}, bad)
    end)

    it("compares no service protocol: upstreams/upstreams.c's table picks each service's ops", function()
        local bad = {}
        for _, path in ipairs(sources()) do
            local n = 0
            for line in read(path):gmatch("[^\n]+") do
                n = n + 1
                if line:match("GG_PROTO_[%u_]+%s*[!=]=") or line:match("[!=]=%s*GG_PROTO_")
                    or line:match("case%s+GG_PROTO_") then
                    bad[#bad + 1] = path .. ":" .. n .. ": " .. line
                end
            end
        end
        assert.same({}, bad)
        assert.truthy(read("gateway/upstreams/upstreams.c"):find("gg_upstream_protocols", 1, true))
    end)
end)
