-- guard: which methods of a service are exported. Nothing private, nothing introspective.
--
--   guard { allow = { "get_*", "list" }, deny = { "get_secret" } }
--
-- Always refused, whatever the lists say: names with an empty segment ("a..b", "x."), any
-- segment starting with "_" (private names and metamethods: "_debug", "__index", "__gc"), and
-- names that do not match `pattern`. With an `allow` list, only names it matches pass (deny by
-- default); `deny` wins over `allow`. Refusals are `forbidden` and read the same whether or not
-- the method exists upstream. The decision depends only on the method, so the pipeline caches
-- it: the lists are not walked per call.

local glob = require "policies.glob"

local setmetatable, ipairs = setmetatable, ipairs
local find = string.find
local format = string.format

local _M = {
    name = "guard",
    priority = 1000,
    schema = {
        type = "record",
        fields = {
            allow = { type = "array", elements = { type = "string" },
                      description = "exported method names or globs; omit to export all" },
            deny = { type = "array", elements = { type = "string" }, default = function() return {} end,
                     description = "method names or globs never exported" },
            pattern = { type = "string", default = "^[%a_][%w_]*$",
                        description = "Lua pattern every dot-separated segment must match" },
        },
    },
}

local mt = { __index = _M }

function _M.new(conf, service)
    return setmetatable({
        allow = conf.allow and glob.compile(conf.allow),
        deny = glob.compile(conf.deny),
        pattern = conf.pattern,
        service = service,
    }, mt)
end

local function refuse(self, method)
    return "forbidden", format("method '%s' is not exported by service '%s'", method, self.service.name)
end

function _M:decide(method)
    local start = 1
    while true do
        local dot = find(method, ".", start, true)
        local stop = dot and dot - 1 or #method
        if stop < start then return refuse(self, method) end -- empty segment
        if method:byte(start) == 95 then return refuse(self, method) end -- "_"
        if not find(method:sub(start, stop), self.pattern) then return refuse(self, method) end
        if not dot then break end
        start = dot + 1
    end
    if self.deny(method) then return refuse(self, method) end
    if self.allow and not self.allow(method) then return refuse(self, method) end
end

--- The exported subset of `names` (sys.describe lists what the guard lets through).
function _M:exports(names)
    local out = {}
    for _, n in ipairs(names) do
        if not self:decide(n) then out[#out + 1] = n end
    end
    return out
end

return _M
