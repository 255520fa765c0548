-- README "Scale out": deploy/local-cluster.sh and every step after it, run as the text has it
-- (spec/support/docrun.lua; the script is started with the free ports the text's ports became),
-- then stopped the way a user stops it: every process it started is gone.
local h = require "spec.support.helpers"
local docrun = require "spec.support.docrun"
local uv = require "luv"

local SECTION = "## Scale out"

-- The script, started in the background on the free ports docrun chose for the text's ports.
local function starter(state)
    return function(cmd, map)
        assert.equal("deploy/local-cluster.sh", cmd)
        local env = {
            CLUSTER_REDIS_PORT = map(7600),
            CLUSTER_GATEWAY_PORTS = map(7601) .. " " .. map(7602),
            CLUSTER_ADMIN_PORTS = map(7611) .. " " .. map(7612),
            CLUSTER_BACKEND_PORTS = map(7621) .. " " .. map(7622) .. " " .. map(7623),
            CLUSTER_DIR = h.tmpdir(),
        }
        local build = h.bin(""):gsub("/$", "") -- the binaries under test (GG_BUILD)
        local proc = assert(h.spawn("deploy/local-cluster.sh", { build },
            { name = "local-cluster", env = env }))
        local line = assert(proc:wait_line("^local%-cluster: ready ", h.timeout(30)))
        state.proc, state.dir = proc, env.CLUSTER_DIR
        state.pids = {}
        for pid in line:match("pids ([%d ]+);"):gmatch("%d+") do
            state.pids[#state.pids + 1] = tonumber(pid)
        end
    end
end

local function alive(pid)
    return uv.kill(pid, 0) == 0
end

describe("README: Scale out", function()
    after_each(h.cleanup)

    it("deploy/local-cluster.sh starts Redis, three registered backends and two gateways; the steps work "
        .. "as written (a fourth backend is discovered); SIGTERM stops every process it started", function()
        local blocks = docrun.blocks(docrun.section("README.md", SECTION))
        assert.is_true(#blocks >= 4, "blocks found: " .. #blocks)
        local state = {}
        local checked = docrun.run(blocks, { background = starter(state) })
        assert.equal(9, checked)
        assert.equal(6, #state.pids) -- redis, 3 backends, 2 gateways
        for _, pid in ipairs(state.pids) do assert.is_true(alive(pid)) end
        assert(state.proc:kill("sigterm"))
        assert.equal(143, state.proc:wait_exit(h.timeout(20)))
        assert.matches("local%-cluster: stopped", state.proc:output())
        for _, pid in ipairs(state.pids) do
            assert.is_false(alive(pid), "pid " .. pid .. " still running")
        end
        -- the gateways were told to stop (SIGTERM: they drained), not killed
        for _, f in ipairs({ "gateway-1.log", "gateway-2.log" }) do
            assert.matches(" stopped clients=", assert(h.read_file(state.dir .. "/" .. f)))
        end
    end)
end)
