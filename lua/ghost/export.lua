-- ghost.export: what a Lua table offers as RPC methods. Its own public functions (names not
-- starting with "_": no private helper, no metamethod), and those of its plain sub-tables (no
-- metatable, not seen before) as dotted names, down to max_nesting levels. Used by ghost.serve
-- backends and by the gateway's Lua adapters.

local next, type, getmetatable = next, type, getmetatable
local sub = string.sub

local _M = {}

--- { ["name"] = fn, ["sub.name"] = fn, ... }
function _M.public_functions(obj, max_nesting)
    local handlers, seen = {}, { [obj] = true }
    local function walk(t, prefix, depth)
        for k, v in next, t do
            if type(k) == "string" and sub(k, 1, 1) ~= "_" then
                if type(v) == "function" then
                    handlers[prefix .. k] = v
                elseif type(v) == "table" and getmetatable(v) == nil and not seen[v]
                        and depth < max_nesting then
                    seen[v] = true
                    walk(v, prefix .. k .. ".", depth + 1)
                end
            end
        end
    end
    walk(obj, "", 1)
    return handlers
end

return _M
