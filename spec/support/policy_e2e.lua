-- spec/support/policy_e2e.lua -- small additions to the test kit for the policy specs
-- (spec/03-policies): configs written as Lua source with the policy constructors, exact call
-- counts taken from ghost-upstream's stats(), and counting gateway log lines.
--
--   gateway(source, opts)    start_gateway with Lua source; "%%UP1%%", "%%UP2%%"... in the source
--                            are replaced by the addresses in opts.up (a list of upstreams).
--                            Raises if the gateway does not start.
--   seen(up)                 requests the upstream received, not counting the kit's stats() calls
--   lines(gw, pattern)       the gateway's log lines matching a Lua pattern (a list)
--   await_lines(gw, pattern, n, timeout)  wait until n lines match; returns them or nil, err
--   call_n(c, n, method, params)          n calls one after the other: list of {result, err}
--   codes(list)              "ok" or the error code of each {result, err}
local h = require "spec.support.helpers"

local assert, ipairs, type = assert, ipairs, type
local format, gsub = string.format, string.gsub

local _M = {}

function _M.gateway(source, opts)
    opts = opts or {}
    for i, up in ipairs(opts.up or {}) do
        source = gsub(source, "%%UP" .. i .. "%%", up.addr)
    end
    return assert(h.start_gateway(source, opts))
end

function _M.seen(up)
    local s = assert(h.upstream_stats(up))
    return s.calls - up.stats_calls
end

function _M.lines(gw, pattern)
    local out = {}
    for _, l in ipairs(gw.proc.lines) do
        if l:find(pattern) then out[#out + 1] = l end
    end
    return out
end

function _M.await_lines(gw, pattern, n, timeout)
    local found
    local ok = h.await(function()
        found = _M.lines(gw, pattern)
        return #found >= n
    end, timeout or h.timeout(5))
    if ok then return found end
    return nil, format("%d of %d log lines matching '%s'; last output:\n%s", #found, n, pattern,
        gw.proc:tail(20))
end

function _M.call_n(c, n, method, params)
    local out = {}
    for i = 1, n do
        local r, err = c:call(method, params)
        out[i] = { r, err }
    end
    return out
end

function _M.codes(list)
    local out = {}
    for i, x in ipairs(list) do
        local err = x[2]
        out[i] = err == nil and "ok" or (type(err) == "table" and err.code or err)
    end
    return out
end

return _M
