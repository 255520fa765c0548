#!/usr/bin/env bash
# deploy/local-cluster.sh [BUILD] -- scale-out on one machine: a redis-server, three backends of
# service `calc` that register themselves in it (deploy/cluster/backend.lua) and two gateways
# sharing it (discover = true, a cluster-wide rate limit, shared breakers), all on 127.0.0.1.
# It prints how to reach them and waits; Ctrl-C (or SIGTERM) stops every process it started,
# by PID (gateways first, so they drain; backends next, so they deregister; Redis last).
#
# Ports, checked free before anything starts (a port in use stops the script, naming the
# process that holds it when ss can tell):
#   CLUSTER_REDIS_PORT      7600              redis-server
#   CLUSTER_GATEWAY_PORTS   "7601 7602"       the gateways (MessagePack-RPC)
#   CLUSTER_ADMIN_PORTS     "7611 7612"       their admin endpoints (/metrics /ready /routes)
#   CLUSTER_BACKEND_PORTS   "7621 7622 7623"  the backends
# CLUSTER_DIR: where the configs and logs go (kept); default a temporary directory, removed.
set -eu

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
REDIS_PORT=${CLUSTER_REDIS_PORT:-7600}
read -r -a GW_PORTS <<<"${CLUSTER_GATEWAY_PORTS:-7601 7602}"
read -r -a ADMIN_PORTS <<<"${CLUSTER_ADMIN_PORTS:-7611 7612}"
read -r -a BACKEND_PORTS <<<"${CLUSTER_BACKEND_PORTS:-7621 7622 7623}"
REDIS=redis://127.0.0.1:$REDIS_PORT

say() { echo "local-cluster: $*"; }
die() {
    echo "local-cluster: $*" >&2
    exit 1
}

if [ ${#GW_PORTS[@]} -ne 2 ] || [ ${#ADMIN_PORTS[@]} -ne 2 ] || [ ${#BACKEND_PORTS[@]} -ne 3 ]; then
    die "CLUSTER_GATEWAY_PORTS and CLUSTER_ADMIN_PORTS take 2 ports, CLUSTER_BACKEND_PORTS 3"
fi
[ -x "$BUILD/ghostgate" ] || die "$BUILD/ghostgate not found; run: make all"
for cmd in redis-server redis-cli; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found; install Debian's redis-server"
done

# Who listens on TCP port $1 ("name (pid N)", or "another process" when ss cannot tell);
# nothing when it is free or ss is missing (then the process's own error says it).
port_holder() {
    command -v ss >/dev/null 2>&1 || return 0
    line=$(ss -Hltnp "sport = :$1" 2>/dev/null | head -n 1)
    [ -n "$line" ] || return 0
    who=$(printf '%s\n' "$line" | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p')
    echo "${who:-another process}"
}

for p in "$REDIS_PORT" "${GW_PORTS[@]}" "${ADMIN_PORTS[@]}" "${BACKEND_PORTS[@]}"; do
    holder=$(port_holder "$p")
    [ -z "$holder" ] || die "port $p is in use by $holder; choose others with CLUSTER_*_PORT(S)"
done

if [ -n "${CLUSTER_DIR:-}" ]; then
    DIR=$CLUSTER_DIR
    KEEP=1
    mkdir -p "$DIR"
else
    DIR=$(mktemp -d)
    KEEP=0
fi

PIDS=() # in start order; stopped in reverse
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    trap - INT TERM
    local i pid n
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for ((n = 0; n < 50; n++)); do # up to 5 s: a gateway drains its calls
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [ "$KEEP" = 1 ] || rm -rf "$DIR"
    say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait up to 10 s for the command "$@" to succeed, else name what failed and its log.
await() {
    local what=$1 log=$2 n
    shift 2
    for ((n = 0; n < 100; n++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -n 5 "$log" >&2 || true
    die "$what did not come up (log: $log)"
}

# Each in its own session: Ctrl-C reaches only this script, which stops them in order.
setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no >"$DIR/redis.log" 2>&1 &
PIDS+=($!)
await "redis-server" "$DIR/redis.log" redis-cli -p "$REDIS_PORT" ping

# shellcheck disable=SC2317 # called through await
registered() { [ "$(redis-cli -p "$REDIS_PORT" SCARD 'ghostgate:{calc}:eps')" = "$1" ]; }
n=0
for p in "${BACKEND_PORTS[@]}"; do
    n=$((n + 1))
    setsid "$BUILD/ghostgate" run "$HERE/cluster/backend.lua" "tcp://127.0.0.1:$p" "$REDIS" \
        >"$DIR/backend-$n.log" 2>&1 &
    PIDS+=($!)
    await "backend $n" "$DIR/backend-$n.log" registered "$n"
done

# The gateways' config: discover = true takes the endpoints from the registry, so a backend
# started later gets calls without a reload.
gateway_config() { # $1 listen port, $2 admin port
    cat <<EOF
return {
    listen = "tcp://127.0.0.1:$1",
    admin = { listen = "127.0.0.1:$2" },
    redis = "$REDIS",
    drain_timeout = 2,
    services = {
        calc = {
            discover = true,
            policies = {
                ratelimit { rate = 100, by = "service", scope = "cluster", on_redis_error = "open" },
                breaker { failures = 3, cooldown = 2 },
            },
        },
    },
}
EOF
}

for i in 0 1; do
    n=$((i + 1))
    gateway_config "${GW_PORTS[i]}" "${ADMIN_PORTS[i]}" >"$DIR/gateway-$n.lua"
    setsid "$BUILD/ghostgate" serve -c "$DIR/gateway-$n.lua" >"$DIR/gateway-$n.log" 2>&1 &
    PIDS+=($!)
    await "gateway $n" "$DIR/gateway-$n.log" grep -q " ready listen=" "$DIR/gateway-$n.log"
done

cat <<EOF
local-cluster: ready (pids ${PIDS[*]}; configs and logs in $DIR)
  redis     $REDIS
  backends  service calc on tcp://127.0.0.1:${BACKEND_PORTS[0]} :${BACKEND_PORTS[1]} :${BACKEND_PORTS[2]}, registered in redis
  gateways  tcp://127.0.0.1:${GW_PORTS[0]}  admin http://127.0.0.1:${ADMIN_PORTS[0]}
            tcp://127.0.0.1:${GW_PORTS[1]}  admin http://127.0.0.1:${ADMIN_PORTS[1]}
  try       $BUILD/ghostgate call -a tcp://127.0.0.1:${GW_PORTS[0]} calc.add 2 3
Ctrl-C stops them all.
EOF

# Until Ctrl-C or SIGTERM (the traps), or until one of them exits on its own.
set +e
wait -n "${PIDS[@]}"
say "a process exited on its own (logs in $DIR); stopping the others" >&2
KEEP=1
exit 1
