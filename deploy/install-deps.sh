#!/bin/sh
# deploy/install-deps.sh [GROUP...] -- make sure the Debian packages ghostgate needs are there.
#
# Groups: build (compile), test (make test, make test SAN=1), bench (make bench), all.
# Default: build test. Checks with dpkg-query and returns at once when nothing is missing (the
# Makefile runs this on every make test / make run). When packages are missing: as root, or
# with passwordless sudo, runs apt-get update + apt-get install; otherwise prints the exact
# command to run and exits 1. GG_SKIP_APT_UPDATE=1 skips the apt-get update.
set -eu

BUILD_PKGS="build-essential pkg-config libuv1-dev libmsgpack-dev luajit libluajit-5.1-dev libjansson-dev libssl-dev libhttp-parser-dev libhiredis-dev"
TEST_PKGS="lua-busted lua-check lua-luv lua-messagepack lua-posix lua-cjson python3-msgpack valgrind clang libclang-rt-14-dev curl redis-server openssl"
BENCH_PKGS="haproxy linux-perf"

[ $# -gt 0 ] || set -- build test
want=""
for group in "$@"; do
    case $group in
    build) want="$want $BUILD_PKGS" ;;
    test) want="$want $TEST_PKGS" ;;
    bench) want="$want $BENCH_PKGS" ;;
    all) want="$want $BUILD_PKGS $TEST_PKGS $BENCH_PKGS" ;;
    -h | --help)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "install-deps: unknown group '$group' (build, test, bench, all)" >&2
        exit 2
        ;;
    esac
done

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps: not a Debian system (no dpkg-query); install the equivalents of:" >&2
    echo "  $want" >&2
    exit 1
fi

# One dpkg-query for all: prints "name status" for the packages dpkg knows.
# shellcheck disable=SC2086
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $want 2>/dev/null | awk '$2 == "installed" { print $1 }')
missing=""
for p in $want; do
    case " $missing " in *" $p "*) continue ;; esac
    if ! printf '%s\n' "$installed" | grep -qx -- "$p"; then
        missing="$missing $p"
    fi
done
[ -n "$missing" ] || exit 0

install_cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    echo "install-deps: missing Debian packages:$missing" >&2
    echo "install-deps: run as root:" >&2
    echo "  apt-get update && DEBIAN_FRONTEND=noninteractive $install_cmd" >&2
    exit 1
fi

echo "install-deps: installing:$missing" >&2
if [ "${GG_SKIP_APT_UPDATE:-0}" != 1 ]; then
    $sudo apt-get update
fi
# shellcheck disable=SC2086
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
