-- guard: which methods of a service are exported. Nothing private, nothing introspective.
--
--   guard { allow = { "get_*", "list" }, deny = { "get_secret" } }
--   guard { allow = { "open" }, objects = { "write", "count", "name" } }
--   guard { allow = { "watch" }, callbacks = { "on_change" } }
--
-- Always refused, whatever the lists say: names with an empty segment ("a..b", "x."), any
-- segment starting with "_" (private names and metamethods: "_debug", "__index", "__gc"), and
-- names that do not match `pattern`. With an `allow` list, only names it matches pass (deny by
-- default); `deny` wins over `allow`. Refusals are `forbidden` and read the same whether or not
-- the method exists upstream. The decision depends only on the method, so the pipeline caches
-- it: the lists are not walked per call.
--
-- Calls on remote objects the service hands out ($call, $get, and calls on promises) are
-- decided with the object's method or attribute name and `object` true. With an `objects`
-- list, only names it matches pass there (and `allow` does not apply to them); without one,
-- they meet `allow` like methods. `deny`, `pattern` and the "_" rule apply to both. Which
-- methods an object has is the interface its backend recorded when it handed it out: the
-- gateway checks that itself (404 no_such_method), never what a caller claims.
--
-- Callbacks (the service's upstreams calling functions and objects that clients passed) are
-- decided with the method name and `callback` true. With a `callbacks` list, only names it
-- matches pass; without one, any method of the interface the client exported. A function is
-- called with no name ("") and always passes the list: a client passes one to have it called.
-- The "_" rule applies to callbacks too (the gateway refuses those itself); `allow`, `deny`,
-- `objects` and `pattern` are about the service's own names and do not. An item ($get with a
-- key that is not a string) is named "[]".

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
            objects = { type = "array", elements = { type = "string" },
                        description = "method and attribute names (or globs) allowed on the "
                            .. "service's remote objects; omit: they meet `allow` like methods" },
            callbacks = { type = "array", elements = { type = "string" },
                          description = "method names (or globs) the service's upstreams may "
                              .. "call on functions and objects clients pass; omit: any the "
                              .. "client exported" },
        },
    },
}

local mt = { __index = _M }

function _M.new(conf, service)
    return setmetatable({
        allow = conf.allow and glob.compile(conf.allow),
        objects = conf.objects and glob.compile(conf.objects),
        callbacks = conf.callbacks and glob.compile(conf.callbacks),
        deny = glob.compile(conf.deny),
        pattern = conf.pattern,
        service = service,
    }, mt)
end

local function refuse(self, method, object, callback)
    if callback then
        return "forbidden", format("service '%s' may not call back '%s' on its clients",
            self.service.name, method)
    end
    if object then
        return "forbidden", format("'%s' is not allowed on objects of service '%s'", method,
            self.service.name)
    end
    return "forbidden", format("method '%s' is not exported by service '%s'", method, self.service.name)
end

function _M:decide(method, _, object, callback)
    if callback then
        -- a function is called with no name; a client passes one to have it called
        if method:byte(1) == 95 or (self.callbacks and method ~= "" and not self.callbacks(method)) then
            return refuse(self, method, object, callback)
        end
        return
    end
    local start = 1
    while true do
        local dot = find(method, ".", start, true)
        local stop = dot and dot - 1 or #method
        if stop < start then return refuse(self, method, object) end -- empty segment
        if method:byte(start) == 95 then return refuse(self, method, object) end -- "_"
        if not find(method:sub(start, stop), self.pattern) then return refuse(self, method, object) end
        if not dot then break end
        start = dot + 1
    end
    if self.deny(method) then return refuse(self, method, object) end
    local list = object and self.objects or self.allow
    if list and not list(method) then return refuse(self, method, object) end
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
