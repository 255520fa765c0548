#!/usr/bin/env bash
# soak.sh -- `make soak DURATION=60`: mixed load through one gateway with faults on a schedule
# (upstream SIGKILL + restart, SIGSTOP/SIGCONT, garbage clients, reloads, slow senders), then a
# report: calls sent vs answered, errors by code, the gateway's RSS at the start and the end.
# Exits 1 when a call is unanswered (or answered twice, or later than its deadline + 1 s), when
# the gateway dies or does not exit 0 on SIGTERM, or when its RSS grows over the second half of
# the run by more than 8 MiB + 10% of the RSS at half time. The work is done by
# spec/support/soak.lua (same test kit as the specs); see docs/robustness.md.
#
# Environment: DURATION=60 (seconds), BUILD=build (where the binaries are), FAULT_EVERY=3,
# SOAK_WARMUP=3, FAULTS=kill,stop,garbage,reload,drip (or none), GG_WRAPPER (e.g. "valgrind -q"
# for the gateway, as in the specs).
set -u
cd "$(dirname "$0")/.." || exit 1
export DURATION=${DURATION:-60}
export GG_BUILD=${BUILD:-build}
for b in ghostgate ghost-upstream ghost-bench; do
    if [ ! -x "$GG_BUILD/$b" ]; then
        echo "soak: $GG_BUILD/$b missing (make all)" >&2
        exit 2
    fi
done
# Thousands of sockets (ours and the gateway's, which inherits this limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export LUA_PATH="./?.lua;./?/init.lua;${LUA_PATH:-;}"
exec luajit spec/support/soak.lua
