-- The docs' runnable examples run as written: in each docs/*.md, the blocks marked
-- `<!-- walkthrough: NAME -->` (config files, commands and their expected output) are run in
-- order by spec/support/docrun.lua, as README's sections are by their own specs.
local h = require "spec.support.helpers"
local docrun = require "spec.support.docrun"

local function run_doc(file, min_checked)
    local blocks = docrun.blocks(assert(h.read_file(file)))
    assert.is_true(#blocks > 0, "no runnable block in " .. file)
    local checked = docrun.run(blocks)
    assert.is_true(checked >= min_checked, file .. ": outputs checked: " .. checked)
end

describe("The docs' examples", function()
    after_each(h.cleanup)

    it("docs/http.md: the front door and its authentication work as written", function()
        run_doc("docs/http.md", 4)
    end)

    it("docs/configuration.md: config errors are as shown", function()
        run_doc("docs/configuration.md", 2)
    end)

    it("docs/client.md: an error's retry_after, and editor stubs, as written", function()
        run_doc("docs/client.md", 1)
    end)

    it("docs/policies.md: policy option errors are as shown", function()
        run_doc("docs/policies.md", 1)
    end)
end)
