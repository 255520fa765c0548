-- The Lua library's decoding budget: params over it are refused before decoding (a Lua table
-- costs some 80 times the byte of an empty MessagePack array). Real processes: the demo backend
-- of `make run` and the kit's raw MessagePack client.
local h = require "spec.support.helpers"
local mp = h.mp

local DEMO = "deploy/demo/service.lua"

describe("The Lua library's decoding budget", function()
    after_each(h.cleanup)

    it("refuses params of more than core.READ_MAX_VALUES values with 413 too_large, undecoded", function()
        local backend = assert(h.start_backend(DEMO, { "tcp://127.0.0.1:0" }))
        local c = assert(h.client(backend.addr))
        -- params [[] x 1000000]: 1000001 values
        local params = mp.raw("\221\0\15\66\64" .. ("\144"):rep(1000000))
        local id = assert(c:send_raw(mp.encode({ 0, 7, "echo", params })) and 7)
        local r = assert(c:wait_response(id, h.timeout(20)))
        assert.same({ code = 413, type = "too_large", message = "params have more than 1000000 values" },
            r.error)
        -- the connection goes on
        assert.equal("hi", (c:call("echo", { "hi" })))
    end)
end)
