-- policies.glob: method-name globs shared by guard, auth scopes and retry.
--   *   any run of characters within one name segment (no '.')
--   **  any run of characters, dots included
--   ?   one character within one name segment (not a '.'; a whole UTF-8 character)
-- Everything else matches itself.

local ipairs = ipairs
local gsub, format = string.gsub, string.format

local _M = {}

--- The anchored Lua pattern for a glob.
function _M.pattern(glob)
    local p = gsub(glob, "[%^%$%(%)%%%.%[%]%+%-]", "%%%0")
    p = gsub(p, "%*%*", "\1")
    p = gsub(p, "%*", "[^.]*")
    -- Like '*', '?' must not cross a dot: "calc?get_x" is not "calc.get_x". One character
    -- is a lead byte (or ASCII) and its continuation bytes.
    p = gsub(p, "%?", "[^.\128-\191][\128-\191]*")
    p = gsub(p, "\1", ".*")
    return format("^%s$", p)
end

--- Compile a list of globs into a matcher: exact names in a set, globs as patterns.
function _M.compile(list)
    local exact, patterns = {}, {}
    for _, g in ipairs(list or {}) do
        if g:find("[%*%?]") then
            patterns[#patterns + 1] = _M.pattern(g)
        else
            exact[g] = true
        end
    end
    return function(name)
        if exact[name] then return true end
        for i = 1, #patterns do
            if name:find(patterns[i]) then return true end
        end
        return false
    end
end

return _M
