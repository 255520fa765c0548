#!/bin/sh
# deploy/run-demo.sh [BUILD] -- what `make run` does: start the demo upstream (the Lua backend
# deploy/demo/service.lua, run by `ghostgate run`, on tcp://127.0.0.1:7421) and the gateway
# with its embedded default config (listen tcp://127.0.0.1:7420, service demo ->
# 127.0.0.1:7421) in the foreground. Ctrl-C drains and stops the gateway, then the upstream.
#
# Other ports: DEMO_PORT (the gateway, default 7420) and DEMO_UPSTREAM_PORT (the demo service,
# default DEMO_PORT + 1), e.g. `make run DEMO_PORT=7520`; the gateway then gets the default
# config with those ports. Both ports are checked first: a port in use stops the script
# before anything starts, naming the process that holds it when ss can tell.
set -eu
BUILD=${1:-build}
PORT=${DEMO_PORT:-7420}
UP_PORT=${DEMO_UPSTREAM_PORT:-$((PORT + 1))}
UPSTREAM=tcp://127.0.0.1:$UP_PORT

DEMO=$(dirname "$0")/demo/service.lua
config= # a config for other ports, removed at exit
addr=

# Who listens on TCP port $1 ("name (pid N)", or "another process" when ss cannot tell);
# nothing when it is free or ss is missing (then the gateway's own error says it).
port_holder() {
    command -v ss >/dev/null 2>&1 || return 0
    line=$(ss -Hltnp "sport = :$1" 2>/dev/null | head -n 1)
    [ -n "$line" ] || return 0
    who=$(printf '%s\n' "$line" | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p')
    echo "${who:-another process (not ours to see; sudo ss -ltnp \"sport = :$1\" names it)}"
}

for p in "$PORT" "$UP_PORT"; do
    holder=$(port_holder "$p")
    if [ -n "$holder" ]; then
        echo "run-demo: port $p is in use by $holder" >&2
        echo "run-demo: stop it, or run the demo on other ports: make run DEMO_PORT=N (the gateway" >&2
        echo "run-demo: on N, the demo service on N+1; DEMO_UPSTREAM_PORT=M moves the service alone)" >&2
        exit 1
    fi
done

for b in ghostgate; do
    if [ ! -x "$BUILD/$b" ]; then
        echo "run-demo: $BUILD/$b not found; run: make all" >&2
        exit 1
    fi
done

out=$(mktemp)
# In its own session, so that Ctrl-C reaches only the gateway, which drains first; the EXIT trap
# then stops the upstream.
setsid "$BUILD/ghostgate" run "$DEMO" "$UPSTREAM" >"$out" 2>&1 &
up=$!
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    kill "$up" 2>/dev/null || true
    wait "$up" 2>/dev/null || true
    rm -f "$out" ${config:+"$config"}
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait (at most 5 s) for the upstream's ready line, or for it to die.
i=0
until grep -q '^ghost.serve: ready ' "$out"; do
    if ! kill -0 "$up" 2>/dev/null || [ $i -ge 100 ]; then
        echo "run-demo: the demo backend ($DEMO) did not start:" >&2
        cat "$out" >&2
        exit 1
    fi
    i=$((i + 1))
    sleep 0.05
done
echo "run-demo: upstream $(sed -n 's/^ghost.serve: ready listen=\([^ ]*\).*/\1/p' "$out") (pid $up)"
if [ "$PORT" != 7420 ] || [ "$UP_PORT" != 7421 ]; then
    # the default config, listening and routing to the ports asked for
    config=$(mktemp)
    sed -e "s|127.0.0.1:7420|127.0.0.1:$PORT|" -e "s|127.0.0.1:7421|127.0.0.1:$UP_PORT|" \
        "$(dirname "$0")/default.lua" >"$config"
    addr="-a tcp://127.0.0.1:$PORT "
fi
echo "run-demo: try:  $BUILD/ghostgate call ${addr}demo.echo '\"hello\"'"
echo "run-demo: Ctrl-C to stop"

# In the foreground: Ctrl-C reaches the gateway, which drains and exits; this shell only waits
# (its no-op traps keep it alive until then) and the EXIT trap stops the upstream.
trap ':' INT TERM
status=0
"$BUILD/ghostgate" serve ${config:+-c "$config"} --log-level info || status=$?
exit "$status"
