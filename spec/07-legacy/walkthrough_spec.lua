-- README "Front a legacy service": every step, run as the text has it. The blocks come from
-- README.md, each marked
-- `<!-- walkthrough: NAME -->`:
--   legacy, users      sh: start a service (`luajit ... --port N &`)
--   legacy.lua, users_adapter.lua, client.lua   files, written as they are (ports adjusted)
--   run                sh: `build/ghostgate serve -c legacy.lua &`, `kill -HUP %2` (reload with
--                      the latest legacy.lua) and `build/ghostgate call ...  # expected output`
-- client.lua runs with `ghostgate run`; its `--> expected` comments are checked against what
-- it prints. Expected outputs ending in "..." are prefixes; JSON is compared as values.
local h = require "spec.support.helpers"
local legacy = require "spec.support.legacy"
local cjson = require "cjson.safe"

local function section()
    local readme = h.read_file("README.md") or ""
    local at = readme:find("\n## Front a legacy service", 1, true)
    if at then
        local stop = readme:find("\n## ", at + 5, true)
        return readme:sub(at, stop or #readme)
    end
    error("README.md has no \"Front a legacy service\" section")
end

-- The marked blocks in order: { name, lang, text }.
local function blocks(text)
    local out = {}
    for name, lang, body in text:gmatch("<!%-%- walkthrough: (%S+) %-%->\n```(%w+)\n(.-)\n```") do
        out[#out + 1] = { name = name, lang = lang, text = body }
    end
    return out
end

-- Split a command line like a shell would for these commands: words, '...' and "..." quoting.
local function words(line)
    local out, i, n = {}, 1, #line
    while i <= n do
        local ch = line:sub(i, i)
        if ch:match("%s") then
            i = i + 1
        else
            local w = ""
            while i <= n and not line:sub(i, i):match("%s") do
                local c = line:sub(i, i)
                if c == "'" or c == '"' then
                    local j = line:find(c, i + 1, true)
                    w = w .. line:sub(i + 1, j - 1)
                    i = j + 1
                else
                    w = w .. c
                    i = i + 1
                end
            end
            out[#out + 1] = w
        end
    end
    return out
end

local function same_output(expected, got)
    expected = expected:gsub("%s+$", "")
    got = got:gsub("%s+$", "")
    if expected:sub(-3) == "..." then
        local prefix = expected:sub(1, -4):gsub("%s+$", "")
        return got:sub(1, #prefix) == prefix
    end
    local ej = expected:match("^error: (.*)$") or expected
    local gj = got:match("^error: (.*)$") or got
    local a, b = cjson.decode(ej), cjson.decode(gj)
    if a ~= nil and b ~= nil and (expected:match("^error: ") ~= nil) == (got:match("^error: ") ~= nil) then
        return require("luassert.util").deepcompare(a, b, true)
    end
    return (expected:gsub("%s+", " ")) == (got:gsub("%s+", " "))
end

describe("README: Front a legacy service", function()
    after_each(h.cleanup)

    it("works step by step as written", function()
        local steps = blocks(section())
        assert.is_true(#steps >= 8, "walkthrough blocks found: " .. #steps)
        local dir = h.tmpdir()
        local gport = h.unused_port()
        local gaddr = "tcp://127.0.0.1:" .. gport
        local ports = {} -- port in the text -> port in use
        local files, gw = {}, nil
        local checked = 0

        local function adjust(text)
            for from, to in pairs(ports) do text = text:gsub(":" .. from, ":" .. to) end
            return (text:gsub("tcp://127%.0%.0%.1:7420", gaddr))
        end

        local function write_config()
            -- the text's config, listening where this test can reach it
            local src = adjust(assert(files["legacy.lua"], "no legacy.lua yet"))
            src = src:gsub("return {\n", ("return {\n    listen = %q, drain_timeout = 2,\n"):format(gaddr), 1)
            assert(h.write_file(dir .. "/legacy.lua", src))
        end

        local function sh(line)
            line = line:gsub("^%s+", "")
            local cmd, expected = line:match("^(.-)%s+#%s(.*)$")
            cmd = cmd or line
            local w = words(cmd)
            if w[1] == "luajit" then -- start a service: on a free port
                local args, port = {}, nil
                for i = 3, #w do
                    if w[i - 1] == "--port" then
                        port = w[i]
                        args[#args + 1] = "0"
                    elseif w[i] ~= "&" then
                        args[#args + 1] = w[i]
                    end
                end
                local s = legacy.script(w[2], args, w[2])
                ports[port] = tostring(s.port)
            elseif w[1] == "build/ghostgate" and w[2] == "serve" then
                write_config()
                local proc = assert(h.spawn(h.bin("ghostgate"), { "serve", "-c", dir .. "/legacy.lua",
                    "--log-level", "info" }, { name = "ghostgate", strict = true }))
                assert(proc:wait_line("ready listen=", h.timeout(10)))
                gw = proc
            elseif w[1] == "kill" and w[2] == "-HUP" then
                write_config()
                local from = #gw.lines + 1
                assert(gw:kill("sighup"))
                local l, err = gw:wait_line("reload", h.timeout(5), from)
                assert(l and l:find("reloaded", 1, true), err or l)
            elseif w[1] == "build/ghostgate" and w[2] == "call" then
                local args = { "call", "-a", gaddr }
                for i = 3, #w do args[#args + 1] = w[i] end
                local r = assert(h.run(h.bin("ghostgate"), args))
                local got = r.code == 0 and r.stdout or r.stderr
                assert(expected, "no expected output for: " .. line)
                assert(same_output(expected, got),
                    ("%s\n  expected: %s\n  got: %s"):format(cmd, expected, got))
                checked = checked + 1
            else
                error("the walkthrough spec cannot run: " .. line)
            end
        end

        for _, b in ipairs(steps) do
            if b.lang == "lua" then
                files[b.name] = b.text
                if b.name == "users_adapter.lua" then
                    assert(h.write_file(dir .. "/" .. b.name, adjust(b.text)))
                elseif b.name == "client.lua" then
                    local r = assert(h.run_lua(adjust(b.text)))
                    assert.equal(0, r.code, r.output)
                    local want = {}
                    for expect in b.text:gmatch("%-%->%s*([^\n]+)") do want[#want + 1] = expect end
                    local got = h.split(r.stdout, "\n")
                    assert.equal(#want, #got, r.output)
                    for i = 1, #want do
                        assert(same_output(want[i], got[i]), want[i] .. " / " .. got[i])
                        checked = checked + 1
                    end
                end
            else
                for line in (b.text .. "\n"):gmatch("([^\n]*)\n") do
                    if line:match("%S") then sh(line) end
                end
            end
        end
        assert.is_true(checked >= 12, "outputs checked: " .. checked)
    end)

    it("ships the configs it describes: deploy/examples/legacy.lua validates", function()
        local r = assert(h.run(h.bin("ghostgate"), { "check", "-c", "deploy/examples/legacy.lua" }))
        assert.equal(0, r.code, r.output)
    end)
end)
