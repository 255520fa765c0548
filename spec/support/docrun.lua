-- spec/support/docrun.lua -- run the documentation's examples as written (README.md and
-- docs/*.md), like spec/07-legacy/walkthrough_spec.lua does for the legacy walkthrough.
--
-- A runnable block is marked `<!-- walkthrough: NAME -->` right above its fence:
--   NAME.lua (a lua block)   a file, written into the run's directory (ports adjusted)
--   run (an sh block)        commands, run in order in that directory:
--     build/ghostgate run SCRIPT &      a ghost.serve backend, on a free port (the port its
--                                       default or argument names is mapped to it)
--     build/ghostgate serve -c F &      the gateway, on free ports for every port F names
--     NAME=$(command)                   a shell variable for the commands after it
--     kill -HUP %N                      reload the gateway (it must log `reloaded`)
--     anything else                     run with bash; its output is checked against the
--                                       expected output written after it: `# text` on the same
--                                       line, or the `# ` lines that follow (joined by spaces);
--                                       in the prompt style (`$ command`), the lines up to the
--                                       next `$ ` line. The output is stdout, or stderr when the
--                                       command fails (a failure must have expected output).
--     `ghostgate` and `build/ghostgate` are the binary under test.
-- Expected output is compared as JSON values when both sides are JSON; text with "..." matches
-- when the output starts with what comes before the first "..."; other text is compared with
-- runs of blanks made one. A command with no expected output only has to exit 0.
--
--   docrun.section(file, heading)   the text of one section ("## HTTP: ..."), up to the next
--                                   heading of the same level
--   docrun.blocks(text)             the marked blocks in order: { name, lang, text }
--   docrun.run(blocks, opts)        run them; opts.ports: ports the text uses for services
--                                   that are started some other way ({ [7421] = true });
--                                   opts.background(cmd, map): starts any other `CMD &` of the
--                                   text (map(port) gives the free port a text port became).
--                                   Returns the number of outputs checked.
local h = require "spec.support.helpers"
local cjson = require "cjson.safe"

local assert, error, ipairs, pairs, tostring = assert, error, ipairs, pairs, tostring
local format, gsub = string.format, string.gsub

local _M = {}

function _M.section(file, heading)
    local text = assert(h.read_file(file), "cannot read " .. file)
    local level = heading:match("^(#+) ")
    local at = text:find("\n" .. heading, 1, true)
    if not at then error(format("%s has no section %q", file, heading), 2) end
    local stop = text:find("\n" .. level .. " ", at + #heading, true)
    return text:sub(at, stop or #text)
end

function _M.blocks(text)
    local out = {}
    for name, lang, body in text:gmatch("<!%-%- walkthrough: (%S+) %-%->\n```(%w+)\n(.-)\n```") do
        out[#out + 1] = { name = name, lang = lang, text = body }
    end
    return out
end

-- Does an sh command continue on the next line: a trailing backslash, or an open quote.
local function open_quote(s)
    local q
    for c in s:gmatch(".") do
        if q then
            if c == q then q = nil end
        elseif c == "'" or c == '"' then
            q = c
        end
    end
    return q ~= nil
end

-- The commands of an sh block: { cmd, expected } with continuation lines joined.
local function commands(text)
    local out, cur = {}, nil
    local prompt = text:match("^%$ ") ~= nil
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
        if prompt and not (cur and cur.more) then
            if line:match("^%$ ") then
                cur = { cmd = line:sub(3) }
                cur.more = cur.cmd:sub(-1) == "\\" or open_quote(cur.cmd)
                out[#out + 1] = cur
            elseif line:match("%S") then
                assert(cur, "expected output before any command: " .. line)
                cur.expected = cur.expected and (cur.expected .. "\n" .. line) or line
            end
        elseif cur and cur.more then
            cur.cmd = cur.cmd .. "\n" .. line
            cur.more = cur.cmd:sub(-1) == "\\" or open_quote(cur.cmd)
        elseif line:match("^#") then
            assert(cur, "expected output before any command: " .. line)
            local e = line:gsub("^#%s?", ""):gsub("^%s+", "")
            cur.expected = cur.expected and (cur.expected .. " " .. e) or e
        elseif line:match("%S") then
            cur = { cmd = line }
            -- an inline comment (outside quotes) is the expected output
            local q, cut
            for i = 1, #line do
                local c = line:sub(i, i)
                if q then
                    if c == q then q = nil end
                elseif c == "'" or c == '"' then
                    q = c
                elseif c == "#" and line:sub(i - 1, i - 1):match("%s") then
                    cut = i
                    break
                end
            end
            if cut then
                cur.cmd = line:sub(1, cut - 1):gsub("%s+$", "")
                cur.expected = line:sub(cut + 1):gsub("^%s+", "")
            end
            cur.more = cur.cmd:sub(-1) == "\\" or open_quote(cur.cmd)
            out[#out + 1] = cur
        end
    end
    return out
end
_M.commands = commands

local function same(expected, got)
    expected = gsub(expected, "%s+$", "")
    got = gsub(got, "%s+$", "")
    local dots = expected:find("...", 1, true)
    if dots then
        local prefix = gsub(expected:sub(1, dots - 1), "%s+$", "")
        return got:sub(1, #prefix) == prefix
    end
    local a, b = cjson.decode(expected), cjson.decode(got)
    if a ~= nil and b ~= nil then return require("luassert.util").deepcompare(a, b, true) end
    return (gsub(expected, "%s+", " ")) == (gsub(got, "%s+", " "))
end
_M.same = same

function _M.run(blocks, opts)
    opts = opts or {}
    local dir = h.tmpdir()
    local root = assert(require("luv").cwd())
    local ports = {} -- port in the text -> free port
    local env = {}
    local gw
    local checked = 0

    local function map(port)
        port = tostring(port)
        if not ports[port] then ports[port] = tostring(h.unused_port()) end
        return ports[port]
    end
    for p in pairs(opts.ports or {}) do map(p) end

    -- every 127.0.0.1:PORT of the text (in files and commands) goes to its free port
    local function adjust(text)
        text = gsub(text, "127%.0%.0%.1:(%d+)", function(p) return "127.0.0.1:" .. map(p) end)
        return text
    end

    local function write(name, text)
        local src = adjust(text)
        local config = src:match("^return {\n") or src:match("^%-%-[^\n]*\nreturn {\n")
        if name:match("%.lua$") and config and not src:match("\n%s*listen%s*=")
            and src:match("\n%s*services%s*=") then
            -- a gateway config: its default MessagePack listener goes to a free port too
            -- on the same line: the lines of the file stay those of the text (errors name them)
            src = src:gsub("return {\n", ("return { listen = \"127.0.0.1:%s\",\n"):format(map(7420)), 1)
        end
        local sub = name:match("^(.*)/[^/]*$")
        if sub then assert(os.execute(format("mkdir -p '%s/%s'", dir, sub)) == 0) end
        assert(h.write_file(dir .. "/" .. name, src))
    end

    local function expand(cmd)
        cmd = gsub(cmd, "^build/ghostgate ", h.bin("ghostgate") .. " ")
        cmd = gsub(cmd, "^ghostgate ", h.bin("ghostgate") .. " ")
        cmd = gsub(cmd, "([%s|(])build/ghostgate ", "%1" .. h.bin("ghostgate") .. " ")
        return adjust(cmd)
    end

    local function sh(c)
        local cmd = c.cmd
        local w = {}
        for x in cmd:gmatch("%S+") do w[#w + 1] = x end
        if w[1] == "build/ghostgate" and w[2] == "run" and w[#w] == "&" then
            local args = {}
            for i = 4, #w - 1 do args[#args + 1] = adjust(w[i]) end
            if #args == 0 then args[1] = "tcp://127.0.0.1:" .. map(7421) end -- ghost.serve's example default
            local b = assert(h.start_backend(root .. "/" .. w[3], args, { name = w[3] }))
            assert(b.addr)
        elseif w[1] == "build/ghostgate" and w[2] == "serve" and w[#w] == "&" then
            local proc = assert(h.spawn(h.bin("ghostgate"), { "serve", "-c", w[4] },
                { name = "ghostgate", strict = true, cwd = dir }))
            assert(proc:wait_line(" ready listen=", h.timeout(10)))
            gw = proc
        elseif w[#w] == "&" and opts.background then
            opts.background(cmd:gsub("%s*&%s*$", ""), map)
        elseif w[1] == "kill" and w[2] == "-HUP" then
            local from = #gw.lines + 1
            assert(gw:kill("sighup"))
            local l, err = gw:wait_line(" reload", h.timeout(5), from)
            assert(l and l:find(" reloaded ", 1, true), err or l)
        else
            local var, inner = cmd:match("^([%a_][%w_]*)=%$%((.*)%)$")
            local r = assert(h.run("bash", { "-c", expand(inner or cmd) }, { cwd = dir, env = env }))
            assert(r.code == 0 or (c.expected and not var), cmd .. "\n" .. r.output)
            if var then
                env[var] = r.stdout:gsub("%s+$", "")
            elseif c.expected then
                local got = r.code == 0 and r.stdout or r.stderr
                assert(same(c.expected, got), format("%s\n  expected: %s\n  got: %s", cmd, c.expected, got))
                checked = checked + 1
            end
        end
    end

    for _, b in ipairs(blocks) do
        if b.lang == "lua" then
            write(b.name, b.text)
        elseif b.name == "run" then
            for _, c in ipairs(commands(b.text)) do sh(c) end
        else
            error("docrun: cannot run block " .. b.name .. " (" .. b.lang .. ")")
        end
    end
    return checked, dir
end

return _M
