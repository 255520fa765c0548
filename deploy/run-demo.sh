#!/bin/sh
# deploy/run-demo.sh [BUILD] -- what `make run` does: start the demo upstream (the Lua backend
# deploy/demo/service.lua, run by `ghostgate run`, on tcp://127.0.0.1:7421) and the gateway
# with its embedded default config (listen tcp://127.0.0.1:7420, service demo ->
# 127.0.0.1:7421) in the foreground. Ctrl-C drains and stops the gateway, then the upstream.
set -eu
BUILD=${1:-build}
UPSTREAM=tcp://127.0.0.1:7421

DEMO=$(dirname "$0")/demo/service.lua

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
    rm -f "$out"
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
echo "run-demo: try:  $BUILD/ghostgate call demo.echo '\"hello\"'"
echo "run-demo: Ctrl-C to stop"

# In the foreground: Ctrl-C reaches the gateway, which drains and exits; this shell only waits
# (its no-op traps keep it alive until then) and the EXIT trap stops the upstream.
trap ':' INT TERM
status=0
"$BUILD/ghostgate" serve --log-level info || status=$?
exit "$status"
