#!/usr/bin/env bash
# run.sh -- the ghostgate benchmark: the same closed-loop load run direct, through HAProxy and
# through ghostgate; proxy CPU per call, then RSS per idle connection and per in-flight call.
# Run by `make bench` (BUILD=build). Loopback only. See docs/performance.md for the method.
#
# Environment:
#   BUILD=build            where ghostgate, ghost-upstream and ghost-bench are
#   BENCH_SECONDS=5        measured seconds per row;  BENCH_WARMUP=1  warm-up seconds
#   BENCH_IDLE=10000       idle connections for the RSS measurement
#   BENCH_PARK=20000       parked calls for the in-flight RSS measurement
#   BENCH_REPEAT=2         runs per row; the one with the least CPU used by other processes
#                          is kept (about 2 minutes per repeat)
#   GG_POLICIES=...        Lua fields for the `bench` service of the `ghostgate+5` row (five
#                          policies, below); set it empty to skip that row
#   REDIS_SERVER=redis-server   for the ghostgate+cluster-rl row (n/a when not installed)
#   BENCH_ROWS="direct haproxy ghostgate ghostgate-ref ghostgate-cb ghostgate+5 ghostgate-w2
#              ghostgate+cluster-rl"   rows to run (ghostgate-ref: calls on a remote object's
#                          reference; ghostgate-cb: callback round trips, backend -> client ->
#                          backend; docs/performance.md); also: haproxy-tls and
#                          ghostgate-tls (TLS 1.3 on the client side, plaintext upstream; P-256
#                          certificate) and handshakes (new TLS handshakes per second through
#                          each, `openssl s_time -new`)

set -u
BUILD=${BUILD:-build}
T=${BENCH_SECONDS:-5}
W=${BENCH_WARMUP:-1}
IDLE_N=${BENCH_IDLE:-10000}
PARK_N=${BENCH_PARK:-20000}
REPEAT=${BENCH_REPEAT:-2}
LIMIT=$(awk -v t="$T" -v w="$W" 'BEGIN { printf "%d", t + w + 30 }') # seconds for one ghost-bench run
PARK_CONNS=40
ROWS=${BENCH_ROWS:-direct haproxy ghostgate ghostgate-ref ghostgate-cb ghostgate+5 ghostgate-w2 ghostgate+cluster-rl}
# The five-policy row: these fields go into the `bench` service table: guard + auth + route +
# breaker + ratelimit, each configured so that it never refuses a call of the benchmark (the
# load generator authenticates every connection with BENCH_KEY first): what is measured is
# their cost on the success path.
BENCH_KEY=bench-key-0123456789abcdef
DEFAULT_POLICIES='policies = {
      guard { allow = { "*" } },
      auth {},
      route { strategy = "round_robin" },
      breaker { failures = 5, cooldown = 2 },
      ratelimit { rate = 1e9, burst = 1e9 },
    },'
GG_POLICIES=${GG_POLICIES-$DEFAULT_POLICIES}
# The cluster rate-limit row: one ratelimit that never refuses, its bucket in a local Redis
# (docs/scale-out.md): the cost of admitting calls from leases, and of the lease round trips.
CLUSTER_POLICIES='policies = { ratelimit { rate = 1e9, burst = 1e9, by = "service", scope = "cluster" } },'
REDIS_SERVER=${REDIS_SERVER:-redis-server}
SHAPES=("c64 d1 64B" "c8 d32 64B" "c8 d32 16KiB bin")

UPSTREAM=$BUILD/ghost-upstream
LOADGEN=$BUILD/ghost-bench
GHOSTGATE=$BUILD/ghostgate
HAPROXY=${HAPROXY:-haproxy}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ghost-bench.XXXXXX")
PIDS=()

# Stop every process this script started, by PID, then remove the scratch directory.
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

die() {
    echo "bench: $*" >&2
    exit 1
}

# Wait until FILE holds a line matching REGEX (up to SECONDS). 0 when it does.
wait_line() {
    local file=$1 re=$2 secs=${3:-10} i
    for i in $(seq $((secs * 20))); do
        grep -qE "$re" "$file" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    local i
    for i in $(seq 200); do
        port_open "$1" && return 0
        sleep 0.05
    done
    return 1
}

# A port below the ephemeral range that nothing listens on (HAProxy cannot report port 0).
free_port() {
    local p i
    for i in $(seq 100); do
        p=$((20000 + RANDOM % 10000))
        port_open "$p" || {
            echo "$p"
            return 0
        }
    done
    return 1
}

# Noise check: CPU the machine spent during a row that was not ghost-bench, the upstream or
# the proxy (other processes, hypervisor steal, kernel threads), in % of one CPU. In ticks.
HZ=$(getconf CLK_TCK)
host_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ours_ticks() { # [PROXY_PID]
    local t
    t=$(proc_ticks "$UP_PID")
    [ -n "${1:-}" ] && t=$((t + $(proc_ticks "$1")))
    echo "$t"
}
# Children reaped so far (ghost-bench runs are), from the shell's `times`.
# `times` must run in this shell (a pipe or $(...) would fork and see no children), so it
# writes to a file; callers use the global CHILD_TICKS.
children_ticks() {
    times >"$TMP/times"
    CHILD_TICKS=$(awk -v hz="$HZ" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] }
        printf "%d", t * hz }' "$TMP/times")
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
nfds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

# Sample RSS every 0.5 s until two samples agree (or 5 s): memory settles after the last
# connection or call has been processed.
rss_settled() {
    local pid=$1 a b i
    a=$(rss_kib "$pid")
    for i in $(seq 10); do
        sleep 0.5
        b=$(rss_kib "$pid")
        [ "$a" = "$b" ] && break
        a=$b
    done
    echo "$b"
}

# Value of KEY in a key=value line.
kv() { awk -v k="$2" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (substr($i, 1, n - 1) == k) print substr($i, n + 1) } }' <<<"$1"; }

# ---- setup ---------------------------------------------------------------------------------

for b in "$UPSTREAM" "$LOADGEN"; do [ -x "$b" ] || die "$b is missing: run make first"; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)
HA_MAXCONN=$(((NOFILE - 100) / 2)) # HAProxy needs two descriptors per TCP-mode connection
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
    LOAD_PIN="taskset -c 0"
    PROXY_PIN="taskset -c 1"
    echo "pinning: ghost-bench + ghost-upstream on CPU 0, the proxy on CPU 1 (taskset)"
else
    LOAD_PIN=""
    PROXY_PIN=""
    echo "pinning: off (only $NCPU CPU): proxy and load share a CPU, numbers are not comparable"
fi
command -v taskset >/dev/null || {
    LOAD_PIN=""
    PROXY_PIN=""
    echo "pinning: taskset not found, not pinned"
}
LOAD=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$LOAD" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: load average $LOAD before the run: other work on this machine skews every row"
fi
echo "window: ${W}s warm-up + ${T}s measured per row, best of $REPEAT; open files limit $NOFILE"

$LOAD_PIN "$UPSTREAM" -l tcp://127.0.0.1:0 >"$TMP/upstream.out" 2>"$TMP/upstream.err" &
UP_PID=$!
PIDS+=("$UP_PID")
wait_line "$TMP/upstream.out" '^ready ' 5 || die "ghost-upstream did not start: $(cat "$TMP/upstream.err")"
UP_ADDR=$(sed -n 's/^ready \([^,]*\).*/\1/p' "$TMP/upstream.out")
UP_HOSTPORT=${UP_ADDR#tcp://}
echo "upstream: $UP_ADDR pid $UP_PID"

# ---- proxies -------------------------------------------------------------------------------

# The TLS rows' certificate: self-signed P-256 (cheap handshakes, as in the specs); HAProxy
# takes certificate and key in one file.
tls_cert() {
    [ -f "$TMP/tls.pem" ] && return 0
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
        -keyout "$TMP/tls.key" -out "$TMP/tls.pem" >/dev/null 2>&1 || return 1
    cat "$TMP/tls.pem" "$TMP/tls.key" >"$TMP/tls-both.pem"
}

# HAProxy 2.6 in plain TCP mode, one thread: the baseline every ratio is against. $1 = tls:
# TLS 1.3 on the client side (ssl crt, ALPN msgpack-rpc), plaintext to the upstream.
start_haproxy() {
    local port cfg=$TMP/haproxy.cfg bind_tls="" scheme=tcp
    if [ "${1:-}" = tls ]; then
        tls_cert || return 1
        bind_tls=" ssl crt $TMP/tls-both.pem alpn msgpack-rpc ssl-min-ver TLSv1.3"
        scheme=tls
    fi
    command -v "$HAPROXY" >/dev/null || return 1
    port=$(free_port) || return 1
    cat >"$cfg" <<EOF
global
    nbthread 1
    maxconn $HA_MAXCONN
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend bench
    bind 127.0.0.1:$port$bind_tls
    default_backend upstream
backend upstream
    server up $UP_HOSTPORT
EOF
    $PROXY_PIN "$HAPROXY" -db -f "$cfg" >"$TMP/haproxy.log" 2>&1 &
    HA_PID=$!
    PIDS+=("$HA_PID")
    wait_port "$port" || return 1
    HA_ADDR=$scheme://127.0.0.1:$port
}

# The config: a `bench` service -> the upstream. $1: extra fields for the bench service.
write_ghostgate_config() {
    local extra=${1:-} top=${2:-}
    [ -x "$GHOSTGATE" ] || return 1
    cat >"$TMP/ghostgate.lua" <<EOF
return {
  listen = "${GG_LISTEN:-tcp://127.0.0.1:0}",
  log_level = "info",
  limits = { max_clients = 30000, max_inflight_per_client = 4096 },
  $top
  auth = { keys = { ["$BENCH_KEY"] = { identity = "bench", scopes = { "bench.*" } } } },
  services = {
    bench = { upstream = "$UP_ADDR", deadline = 30, $extra },
    park = { upstream = "$UP_ADDR", deadline = 3600 },
  },
}
EOF
}

# ghostgate on the proxy CPU; sets GG_PID and GG_ADDR. $1: as write_ghostgate_config.
start_ghostgate() {
    local cfg=$TMP/ghostgate.lua
    write_ghostgate_config "${1:-}" "${2:-}" || return 1
    : >"$TMP/ghostgate.err"
    $PROXY_PIN "$GHOSTGATE" serve -c "$cfg" --log-level info 2>"$TMP/ghostgate.err" &
    GG_PID=$!
    PIDS+=("$GG_PID")
    wait_line "$TMP/ghostgate.err" ' ready listen=' 10 || return 1
    GG_ADDR=$(sed -n 's/.* ready listen=\([^ ,]*\).*/\1/p' "$TMP/ghostgate.err" | head -1)
    [ -n "$GG_ADDR" ]
}

# A redis-server on a free loopback port, no persistence; sets REDIS_PID and REDIS_URL.
start_redis() {
    local port
    command -v "$REDIS_SERVER" >/dev/null || return 1
    port=$(free_port) || return 1
    "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$TMP" >"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_port "$port" || return 1
    REDIS_URL=redis://127.0.0.1:$port
}

# ---- throughput and CPU rows ---------------------------------------------------------------

declare -A RES # "row|shape" -> the ghost-bench line, or "failed: why" / "n/a ..."

# run_row ROW SHAPE ADDR METHOD WATCH_PID: REPEAT runs, the quietest (least other CPU) kept.
run_row() {
    local i best="" r
    for i in $(seq "$REPEAT"); do
        run_once "$@"
        r=${RES["$1|$2"]}
        if [ -z "$best" ] || { [ -n "$(kv "$r" calls/s)" ] &&
            { [ -z "$(kv "$best" calls/s)" ] || [ "$(kv "$r" other_cpu_pct)" -lt "$(kv "$best" other_cpu_pct)" ]; }; }; then
            best=$r
        fi
    done
    RES["$1|$2"]=$best
}

run_once() {
    local row=$1 shape=$2 addr=$3 method=$4 watch=$5 c d s bin="" out rc
    read -r c d s _ <<<"$shape"
    c=${c#c}
    d=${d#d}
    case $s in *KiB) s=$((${s%KiB} * 1024)) ;; *B) s=${s%B} ;; esac
    [[ $shape == *bin* ]] && bin=--bin
    local t0 b0 o0 l0 t1 b1 o1 l1 other
    children_ticks
    t0=$(date +%s%N) b0=$(host_busy) o0=$(ours_ticks "$watch") l0=$CHILD_TICKS
    out=$(timeout "$LIMIT" $LOAD_PIN "$LOADGEN" -a "$addr" -c "$c" -d "$d" -s "$s" $bin \
        -m "$method" -t "$T" -w "$W" ${watch:+--watch-pid "$watch"} ${TOKEN:+--token "$TOKEN"} \
        ${REF:+--ref "$REF"} ${CB:+--callback "$CB"} 2>"$TMP/loadgen.err")
    rc=$?
    children_ticks
    t1=$(date +%s%N) b1=$(host_busy) o1=$(ours_ticks "$watch") l1=$CHILD_TICKS
    other=$(awk -v b=$((b1 - b0)) -v o=$((o1 - o0 + l1 - l0)) -v ns=$((t1 - t0)) -v hz="$HZ" \
        'BEGIN { v = (b - o) / hz / (ns / 1e9) * 100; printf "%.0f", v < 0 ? 0 : v }')
    if [ -z "$(kv "$out" calls/s)" ]; then
        RES["$row|$shape"]="failed: rc=$rc $(head -c 200 "$TMP/loadgen.err" | tr '\n' ' ')"
    else
        RES["$row|$shape"]="$out other_cpu_pct=$other"
    fi
    echo "  $row, $shape: ${RES["$row|$shape"]}"
}

run_rows_for() { # ROW ADDR METHOD WATCH_PID
    local shape
    for shape in "${SHAPES[@]}"; do run_row "$1" "$shape" "$2" "$3" "$4"; done
}

mark_rows() { # ROW TEXT
    local shape
    for shape in "${SHAPES[@]}"; do RES["$1|$shape"]=$2; done
    echo "  $1: $2"
}

for row in $ROWS; do
    case $row in
    direct)
        run_rows_for direct "$UP_ADDR" echo ""
        ;;
    haproxy)
        if start_haproxy; then
            run_rows_for haproxy "$HA_ADDR" echo "$HA_PID"
        else
            mark_rows haproxy "failed: haproxy did not start $(head -c 200 "$TMP/haproxy.log" 2>/dev/null)"
        fi
        [ -n "${HA_PID:-}" ] && stop_pid "$HA_PID" && forget_pid "$HA_PID"
        HA_PID=
        ;;
    ghostgate)
        if start_ghostgate ""; then
            run_rows_for ghostgate "$GG_ADDR" bench.echo "$GG_PID"
        else
            mark_rows ghostgate "failed: ghostgate did not start $(tail -c 200 "$TMP/ghostgate.err" 2>/dev/null | tr '\n' ' ')"
        fi
        [ -n "${GG_PID:-}" ] && stop_pid "$GG_PID" && forget_pid "$GG_PID"
        GG_PID=
        ;;
    ghostgate-ref)
        # Calls on a reference: each connection first gets a counter object (bench.counter, a
        # remote object of ghost-upstream), then sends $call [<its id>, "echo", [payload]]:
        # the same payload and answer as bench.echo, plus the gateway's reference lookup, the
        # service's policies by the object's method name and the params' rewrite.
        if start_ghostgate "objects = true,"; then
            REF=bench.counter run_rows_for ghostgate-ref "$GG_ADDR" echo "$GG_PID"
        else
            mark_rows ghostgate-ref "failed: ghostgate did not start with objects = true"
        fi
        [ -n "${GG_PID:-}" ] && stop_pid "$GG_PID" && forget_pid "$GG_PID"
        GG_PID=
        ;;
    ghostgate-cb)
        # Callback round trips: every call passes a function of the client's (one per
        # connection, sent again with each call) to bench.callback, whose upstream calls it back
        # with the payload ($call on the gateway's id for it, the gateway's own request to the
        # client), answers the call with the client's answer, and releases the function (one
        # $release per upstream connection per loop turn). One call is three messages each way
        # through the gateway against one for bench.echo.
        if start_ghostgate "objects = true,"; then
            CB=bench.callback run_rows_for ghostgate-cb "$GG_ADDR" bench.callback "$GG_PID"
        else
            mark_rows ghostgate-cb "failed: ghostgate did not start with objects = true"
        fi
        [ -n "${GG_PID:-}" ] && stop_pid "$GG_PID" && forget_pid "$GG_PID"
        GG_PID=
        ;;
    ghostgate-w2)
        # Two worker processes on the proxy's one CPU: what the master/worker split costs.
        # The CPU column stays empty: the workers are the master's children, and /proc counts
        # a child's time in its parent only once it has exited.
        if start_ghostgate "" "workers = 2,"; then
            run_rows_for ghostgate-w2 "$GG_ADDR" bench.echo ""
        else
            mark_rows ghostgate-w2 "failed: ghostgate did not start with workers = 2"
        fi
        [ -n "${GG_PID:-}" ] && stop_pid "$GG_PID" && forget_pid "$GG_PID"
        GG_PID=
        ;;
    ghostgate+5)
        if [ -z "$GG_POLICIES" ]; then
            mark_rows ghostgate+5 "n/a (GG_POLICIES is empty)"
        elif ! write_ghostgate_config "$GG_POLICIES" ||
            ! "$GHOSTGATE" check -c "$TMP/ghostgate.lua" >/dev/null 2>"$TMP/check.err"; then
            # A build without policy support rejects the config: not a failure of the row.
            mark_rows ghostgate+5 "n/a (this ghostgate rejects the policy config: $(head -c 150 "$TMP/check.err" | tr '\n' ' '))"
        elif start_ghostgate "$GG_POLICIES"; then
            TOKEN=$BENCH_KEY run_rows_for ghostgate+5 "$GG_ADDR" bench.echo "$GG_PID"
        else
            mark_rows ghostgate+5 "failed: ghostgate did not start with GG_POLICIES"
        fi
        [ -n "${GG_PID:-}" ] && stop_pid "$GG_PID" && forget_pid "$GG_PID"
        GG_PID=
        ;;
    ghostgate+cluster-rl)
        if ! start_redis; then
            mark_rows ghostgate+cluster-rl "n/a ($REDIS_SERVER did not start or is not installed)"
        elif start_ghostgate "$CLUSTER_POLICIES" "redis = \"$REDIS_URL\","; then
            run_rows_for ghostgate+cluster-rl "$GG_ADDR" bench.echo "$GG_PID"
        else
            mark_rows ghostgate+cluster-rl "failed: ghostgate did not start with a cluster ratelimit $(tail -c 200 "$TMP/ghostgate.err" 2>/dev/null | tr '\n' ' ')"
        fi
        [ -n "${GG_PID:-}" ] && stop_pid "$GG_PID" && forget_pid "$GG_PID"
        GG_PID=
        [ -n "${REDIS_PID:-}" ] && stop_pid "$REDIS_PID" && forget_pid "$REDIS_PID"
        REDIS_PID=
        ;;
    haproxy-tls)
        if start_haproxy tls; then
            run_rows_for haproxy-tls "$HA_ADDR" echo "$HA_PID"
        else
            mark_rows haproxy-tls "failed: haproxy did not start with ssl $(head -c 200 "$TMP/haproxy.log" 2>/dev/null)"
        fi
        [ -n "${HA_PID:-}" ] && stop_pid "$HA_PID" && forget_pid "$HA_PID"
        HA_PID=
        ;;
    ghostgate-tls)
        if tls_cert && GG_LISTEN=tls://127.0.0.1:0 start_ghostgate "" \
            "tls = { cert = \"$TMP/tls.pem\", key = \"$TMP/tls.key\" },"; then
            run_rows_for ghostgate-tls "$GG_ADDR" bench.echo "$GG_PID"
        else
            mark_rows ghostgate-tls "failed: ghostgate did not start with tls:// $(tail -c 200 "$TMP/ghostgate.err" 2>/dev/null | tr '\n' ' ')"
        fi
        [ -n "${GG_PID:-}" ] && stop_pid "$GG_PID" && forget_pid "$GG_PID"
        GG_PID=
        ;;
    handshakes) ;; # after the table
    *) die "unknown row '$row'" ;;
    esac
done

# ---- the table -----------------------------------------------------------------------------

echo
printf '%-20s %-17s %10s %9s %9s %8s %10s %9s %9s %7s\n' row shape calls/s p50/us p99/us errors \
    cpu/call calls/s cpu other
printf '%-20s %-17s %10s %9s %9s %8s %10s %9s %9s %7s\n' "" "" "" "" "" "" "proxy/us" "vs HAP" "vs HAP" "cpu%"
for row in $ROWS; do
    [ "$row" = handshakes ] && continue
    for shape in "${SHAPES[@]}"; do
        r=${RES["$row|$shape"]:-failed: not run}
        if [ -z "$(kv "$r" calls/s)" ]; then
            printf '%-20s %-17s %s\n' "$row" "$shape" "$r"
            continue
        fi
        h=${RES["haproxy|$shape"]:-}
        cps=$(kv "$r" calls/s)
        cpu=$(kv "$r" watch_cpu_us_per_call)
        errs=$(kv "$r" errors)
        un=$(kv "$r" unanswered)
        [ "${un:-0}" != 0 ] && errs="$errs+${un}u"
        hcps=$(kv "$h" calls/s)
        hcpu=$(kv "$h" watch_cpu_us_per_call)
        rcps=$(awk -v a="$cps" -v b="$hcps" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
        rcpu=$(awk -v a="$cpu" -v b="$hcpu" 'BEGIN { if (a != "" && a != "n/a" && b > 0) printf "%.2fx", a / b; else print "-" }')
        [ "$row" = haproxy ] && rcps=1.00x && rcpu=1.00x
        printf '%-20s %-17s %10s %9s %9s %8s %10s %9s %9s %7s\n' "$row" "$shape" "$cps" \
            "$(kv "$r" p50 | sed 's/us$//')" "$(kv "$r" p99 | sed 's/us$//')" "$errs" \
            "${cpu:--}" "$rcps" "$rcpu" "$(kv "$r" other_cpu_pct)"
    done
done
for shape in "${SHAPES[@]}"; do
    a=$(kv "${RES["ghostgate|$shape"]:-}" watch_cpu_us_per_call)
    b=$(kv "${RES["ghostgate+5|$shape"]:-}" watch_cpu_us_per_call)
    [ -n "$a" ] && [ -n "$b" ] &&
        awk -v a="$a" -v b="$b" -v s="$shape" 'BEGIN { printf "five policies, %s: %+.2f us CPU per call over ghostgate\n", s, b - a }'
    b=$(kv "${RES["ghostgate-ref|$shape"]:-}" watch_cpu_us_per_call)
    [ -n "$a" ] && [ -n "$b" ] && [ "$b" != n/a ] && [ "$a" != n/a ] &&
        awk -v a="$a" -v b="$b" -v s="$shape" 'BEGIN { if (a > 0) printf "calls on a reference, %s: %.2fx the CPU per call of ghostgate (target: at most 1.15x)\n", s, b / a }'
    b=$(kv "${RES["ghostgate-cb|$shape"]:-}" watch_cpu_us_per_call)
    [ -n "$a" ] && [ -n "$b" ] && [ "$b" != n/a ] && [ "$a" != n/a ] &&
        awk -v a="$a" -v b="$b" -v s="$shape" 'BEGIN { if (a > 0) printf "callback round trips, %s: %.2fx the CPU per call of ghostgate (target: at most 2.2x)\n", s, b / a }'
done
echo "cpu/call: proxy utime+stime over the measured window / calls answered in it."
echo "other cpu%: CPU used during the row by anything but ghost-bench, upstream and proxy"
echo "  (% of one CPU); more than a few % means a busy machine and unreliable numbers."

# ---- TLS handshakes per second -------------------------------------------------------------

# Four `openssl s_time -new` on the load CPU, each a full TLS 1.3 handshake per connection
# (connect, handshake, close), for T seconds; the proxy's CPU per handshake from /proc.
hs_row() { # NAME ADDR PID
    local hp=${2#tls://} i n=0 c t0 t1 p0 p1 pids=()
    t0=$(date +%s%N) p0=$(proc_ticks "$3")
    for i in 1 2 3 4; do
        timeout $((T + 30)) $LOAD_PIN openssl s_time -connect "$hp" -new -time "$T" >"$TMP/s_time.$i" 2>&1 \
            </dev/null &
        pids+=($!)
    done
    wait "${pids[@]}" # not the upstream and proxy, also children of this shell
    t1=$(date +%s%N) p1=$(proc_ticks "$3")
    for i in 1 2 3 4; do
        c=$(sed -n 's/^\([0-9]*\) connections in [0-9.]* real seconds.*/\1/p' "$TMP/s_time.$i" | head -1)
        n=$((n + ${c:-0}))
    done
    awk -v n="$n" -v ns=$((t1 - t0)) -v p=$((p1 - p0)) -v hz="$HZ" -v name="$1" 'BEGIN {
        if (n == 0) { printf "%-14s failed: no handshake\n", name; exit }
        printf "%-14s %8.0f handshakes/s  %7.0f us proxy CPU per handshake\n", name, n / (ns / 1e9),
            p / hz * 1e6 / n }'
}
if [[ " $ROWS " == *" handshakes "* ]]; then
    echo
    echo "new TLS 1.3 handshakes (P-256, 4 x openssl s_time -new, ${T}s):"
    if start_haproxy tls; then hs_row haproxy-tls "$HA_ADDR" "$HA_PID"; else echo "haproxy-tls: failed to start"; fi
    [ -n "${HA_PID:-}" ] && stop_pid "$HA_PID" && forget_pid "$HA_PID"
    HA_PID=
    if tls_cert && GG_LISTEN=tls://127.0.0.1:0 start_ghostgate "" \
        "tls = { cert = \"$TMP/tls.pem\", key = \"$TMP/tls.key\", max_handshakes = 4096 },"; then
        hs_row ghostgate-tls "$GG_ADDR" "$GG_PID"
    else
        echo "ghostgate-tls: failed to start"
    fi
    [ -n "${GG_PID:-}" ] && stop_pid "$GG_PID" && forget_pid "$GG_PID"
    GG_PID=
fi

# ---- memory --------------------------------------------------------------------------------

# Idle connections: (RSS with N idle clients - RSS before) / N. The proxy is fresh, so the
# baseline is the process after start-up; both numbers are VmRSS from /proc/PID/status.
idle_rss() { # NAME PID ADDR N FDS_PER_CONN
    local name=$1 pid=$2 addr=$3 n=$4 per=$5 before after fd0 lg i
    before=$(rss_settled "$pid")
    fd0=$(nfds "$pid")
    $LOAD_PIN "$LOADGEN" -a "$addr" --idle "$n" >"$TMP/idle.out" 2>"$TMP/idle.err" &
    lg=$!
    PIDS+=("$lg")
    if ! wait_line "$TMP/idle.out" '^ready' 60; then
        echo "$name: failed: $(head -c 200 "$TMP/idle.err")"
        stop_pid "$lg"
        forget_pid "$lg"
        return
    fi
    # Connected on the client side does not mean accepted: wait until the proxy holds them.
    for i in $(seq 100); do
        [ "$(nfds "$pid")" -ge $((fd0 + n * per)) ] && break
        sleep 0.1
    done
    after=$(rss_settled "$pid")
    echo "$name: $n idle connections ($(($(nfds "$pid") - fd0)) fds): RSS ${before} KiB -> ${after} KiB:" \
        "$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.0f B", (a - b) * 1024 / n }') per connection"
    stop_pid "$lg"
    forget_pid "$lg"
}

echo
echo "memory (VmRSS deltas):"
# HAProxy holds two descriptors per client in TCP mode (client and server side).
HA_IDLE_N=$(((NOFILE - 200) / 2))
[ "$HA_IDLE_N" -gt "$IDLE_N" ] && HA_IDLE_N=$IDLE_N
GG_IDLE_N=$((NOFILE - 200))
[ "$GG_IDLE_N" -gt "$IDLE_N" ] && GG_IDLE_N=$IDLE_N

if [[ " $ROWS " == *" haproxy "* ]]; then
    if start_haproxy; then
        idle_rss haproxy "$HA_PID" "$HA_ADDR" "$HA_IDLE_N" 2
    else
        echo "haproxy: failed: did not start"
    fi
    [ -n "${HA_PID:-}" ] && stop_pid "$HA_PID" && forget_pid "$HA_PID"
fi

if [[ " $ROWS " == *" ghostgate "* ]]; then
    if start_ghostgate ""; then
        idle_rss ghostgate "$GG_PID" "$GG_ADDR" "$GG_IDLE_N" 1
    else
        echo "ghostgate idle: failed: ghostgate did not start"
    fi
    [ -n "${GG_PID:-}" ] && stop_pid "$GG_PID" && forget_pid "$GG_PID"

    # In-flight calls: PARK_N calls to park.hang (never answered; the service deadline is an
    # hour) over PARK_CONNS connections with an empty-string payload. The baseline is sampled
    # with the same connections open before any call is sent (ghost-bench --wait-usr1).
    if start_ghostgate ""; then
        $LOAD_PIN "$LOADGEN" -a "$GG_ADDR" --park "$PARK_N" -c "$PARK_CONNS" -m park.hang -s 0 \
            --wait-usr1 >"$TMP/park.out" 2>"$TMP/park.err" &
        lg=$!
        PIDS+=("$lg")
        if wait_line "$TMP/park.out" '^connected' 30; then
            before=$(rss_settled "$GG_PID")
            kill -USR1 "$lg"
            if wait_line "$TMP/park.out" '^ready' 60; then
                after=$(rss_settled "$GG_PID")
                echo "ghostgate: $PARK_N in-flight calls (park.hang, empty payload): RSS ${before} KiB -> ${after} KiB:" \
                    "$(awk -v a="$after" -v b="$before" -v n="$PARK_N" 'BEGIN { printf "%.0f B", (a - b) * 1024 / n }') per call"
            else
                echo "ghostgate in-flight: failed: calls not sent $(head -c 200 "$TMP/park.err")"
            fi
        else
            echo "ghostgate in-flight: failed: $(head -c 200 "$TMP/park.err")"
        fi
        stop_pid "$lg"
        forget_pid "$lg"
    else
        echo "ghostgate in-flight: failed: ghostgate did not start"
    fi
    [ -n "${GG_PID:-}" ] && stop_pid "$GG_PID" && forget_pid "$GG_PID"
fi
exit 0
