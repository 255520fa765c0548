-- The embedded default config: `ghostgate serve` with no -c. The demo service of `make run`
-- (deploy/demo/service.lua) listens on 127.0.0.1:7421; its methods are declared so that
-- sys.describe and `ghostgate stubs` can list them.
return {
    listen = { "tcp://127.0.0.1:7420" },
    services = {
        demo = {
            upstream = "tcp://127.0.0.1:7421",
            deadline = 30,
            methods = {
                echo = { "value: any" },
                add = { "a: number", "b: number" },
                upper = { "s: string" },
                time = {},
                sleep = { "seconds: number", "value: any?" },
                fail = { "message: string?" },
                info = {},
            },
        },
    },
}
