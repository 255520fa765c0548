-- A gateway in front of legacy services (README "Front a legacy service", docs/legacy.md):
--   calc   the JSON-RPC service deploy/examples/jsonrpc_service.lua, over HTTP
--   users  the REST service deploy/examples/users_service.lua, through users_adapter.lua
-- both guarded: only the listed methods, an API key for calc, breakers, a rate limit.
--
--   luajit deploy/examples/jsonrpc_service.lua &   luajit deploy/examples/users_service.lua &
--   build/ghostgate serve -c deploy/examples/legacy.lua
--   build/ghostgate call -T calc-key-0123456789abcdef calc.add 2 3
--
-- CALC_URL and USERS_URL (read by users_adapter.lua) point elsewhere.
return {
    listen = "tcp://127.0.0.1:7420",
    auth = {
        keys = {
            ["calc-key-0123456789abcdef"] = { identity = "app", scopes = { "calc.*", "users.*" } },
        },
    },
    services = {
        calc = {
            protocol = "jsonrpc-http",
            upstream = os.getenv("CALC_URL") or "http://127.0.0.1:8545/rpc",
            headers = { ["X-Client"] = "ghostgate" }, -- sent with every request
            connections = 8, -- each carries one request at a time
            deadline = 2,
            policies = {
                guard { allow = { "add", "divide", "echo" } }, -- reset_everything stays private
                auth {},
                breaker { failures = 5, cooldown = 10 },
            },
        },
        users = {
            adapter = "users_adapter.lua", -- next to this file
            deadline = 2,
            policies = {
                guard { allow = { "get", "create" } },
                ratelimit { rate = 100, burst = 200 },
                breaker { failures = 5, cooldown = 10 }, -- counts the 502/504 it lets through
            },
        },
    },
}
