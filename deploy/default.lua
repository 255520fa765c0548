-- The embedded default config: `ghostgate serve` with no -c. The demo service of `make run`
-- listens on 127.0.0.1:7421.
return {
    listen = { "tcp://127.0.0.1:7420" },
    services = {
        demo = { upstream = "tcp://127.0.0.1:7421", deadline = 30 },
    },
}
