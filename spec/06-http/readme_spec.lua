-- README "HTTP: JSON-RPC for everyone, and an admin endpoint": every step, run as the text has
-- it (spec/support/docrun.lua: the marked blocks, their files and commands, outputs checked).
local h = require "spec.support.helpers"
local docrun = require "spec.support.docrun"

describe("README: HTTP: JSON-RPC for everyone, and an admin endpoint", function()
    after_each(h.cleanup)

    it("works step by step as written: a config, a token, calls with curl, the admin endpoint", function()
        local blocks = docrun.blocks(docrun.section("README.md",
            "## HTTP: JSON-RPC for everyone, and an admin endpoint"))
        assert.is_true(#blocks >= 4, "blocks found: " .. #blocks)
        local checked = docrun.run(blocks)
        assert.is_true(checked >= 7, "outputs checked: " .. checked)
    end)
end)
