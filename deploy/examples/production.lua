-- A production gateway: TLS 1.3 with client certificates for every caller, identities and
-- scopes from the certificates, plain upstreams on the private network, the admin endpoint on
-- loopback only. Install as /etc/ghostgate/gateway.lua (`make install` puts this file in
-- $(PREFIX)/share/doc/ghostgate/examples/). Relative file names start at this file's
-- directory: put the certificates in /etc/ghostgate/tls/. `ghostgate check -c FILE` validates
-- it, certificates included; `systemctl reload ghostgate` re-reads both.
return {
    listen = { "tls://0.0.0.0:7443" },
    tls = {
        cert = "tls/server.pem",          -- chain, leaf first (P-256 keys are cheapest)
        key = "tls/server.key",
        ca = "tls/clients-ca.pem",        -- the CA that signs the callers' certificates
        verify_client = true,             -- no certificate, no connection
        handshake_timeout = 10,
        max_handshakes = 256,
    },
    auth = {
        -- the certificate's CN is the caller's identity; scopes say what it may call
        certs = {
            ["CN=billing"] = { identity = "billing", scopes = { "invoices.*", "users.get_*" } },
            ["CN=ops"] = { identity = "ops", scopes = { "**" } },
        },
    },
    admin = { listen = "127.0.0.1:7490" },  -- /metrics, /health: loopback only
    pid_file = "/run/ghostgate/ghostgate.pid",
    log_level = "warn",
    workers = 2,
    limits = { max_clients = 20000, idle_timeout = 300 },
    services = {
        invoices = {
            upstreams = { "tcp://10.0.0.5:9000", "tcp://10.0.0.6:9000" },
            deadline = 5,
            policies = {
                auth {},
                breaker { failures = 5, cooldown = 2 },
                ratelimit { rate = 500 },
            },
        },
        users = {
            -- an upstream that wants TLS too: checked against the internal CA and its name
            upstreams = { "tls://10.0.0.7:9443" },
            tls = { ca = "tls/internal-ca.pem", server_name = "users.internal" },
            deadline = 2,
            policies = { auth {} },
        },
    },
}
