#!/usr/bin/env bash
# Load test of GET /health: mtapi next to nginx serving the same response with
# the same number of workers, measured alternately in one run with wrk.
# Prints the median requests/s and p99 latency of each and the ratio
# mtapi/nginx. See bench/README.md for the knobs and how to read the figures.
#
#   bench/health.sh                      (or: make bench-health)
#   BENCH_THREADS=2 BENCH_ROUNDS=5 bench/health.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

THREADS=${BENCH_THREADS:-1}
CONNS=${BENCH_CONNECTIONS:-64}
DURATION=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2s}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
ACCESS_LOG=${BENCH_ACCESS_LOG:-off}
SERVER_CPUS=${BENCH_SERVER_CPUS:-}
WRK_CPUS=${BENCH_WRK_CPUS:-}
MTAPI_BIN=${MTAPI_BIN:-$ROOT/build/release/mtapi}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
WRK_BIN=${WRK_BIN:-wrk}
LUA_SCRIPT=$ROOT/bench/wrk/summary.lua
NGINX_TEMPLATE=$ROOT/bench/nginx/health.conf.template

# ---- arguments --------------------------------------------------------------

is_uint() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0)); }
# Durations as wrk takes them (s, m, h); a bare number means seconds.
norm_duration() {
  if [[ $1 =~ ^[0-9]+$ ]]; then echo "${1}s"; elif [[ $1 =~ ^[0-9]+[smh]$ ]]; then echo "$1"; else return 1; fi
}

is_uint "$THREADS" || bench_die "BENCH_THREADS must be a positive integer (got '$THREADS')"
is_uint "$CONNS" || bench_die "BENCH_CONNECTIONS must be a positive integer (got '$CONNS')"
is_uint "$ROUNDS" || bench_die "BENCH_ROUNDS must be a positive integer (got '$ROUNDS')"
is_uint "$WRK_THREADS" || bench_die "BENCH_WRK_THREADS must be a positive integer (got '$WRK_THREADS')"
((CONNS >= WRK_THREADS)) || bench_die "BENCH_CONNECTIONS ($CONNS) must be >= BENCH_WRK_THREADS ($WRK_THREADS)"
DURATION=$(norm_duration "$DURATION") || bench_die "BENCH_DURATION must look like 10, 10s, 1m (got '$DURATION')"
if [[ $WARMUP == 0 || $WARMUP == 0s ]]; then
  WARMUP=
else
  WARMUP=$(norm_duration "$WARMUP") || bench_die "BENCH_WARMUP must look like 2, 2s or 0 (got '$WARMUP')"
fi
case $ACCESS_LOG in
  on | off) ;;
  *) bench_die "BENCH_ACCESS_LOG must be on or off (got '$ACCESS_LOG')" ;;
esac

[[ -x $MTAPI_BIN ]] || bench_die "$MTAPI_BIN not found: build it first (make build)"
[[ -x $NGINX_BIN ]] || bench_die "nginx not found ($NGINX_BIN): apt-get install nginx-light, or set NGINX_BIN"
command -v "$WRK_BIN" >/dev/null || bench_die "wrk not found: apt-get install wrk, or set WRK_BIN"
command -v curl >/dev/null || bench_die "curl not found"

# Optional CPU pinning (taskset lists such as 0 or 0-1).
server_prefix=()
wrk_prefix=()
if [[ -n $SERVER_CPUS ]]; then server_prefix=(taskset -c "$SERVER_CPUS"); fi
if [[ -n $WRK_CPUS ]]; then wrk_prefix=(taskset -c "$WRK_CPUS"); fi

# ---- processes and cleanup --------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mtapi-bench-health.XXXXXX")
mtapi_pid=
nginx_pid=
wrk_pid=

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM HUP
  if [[ -n $wrk_pid ]]; then
    kill -TERM "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" 2>/dev/null || true
  fi
  bench_stop "$mtapi_pid"
  bench_stop "$nginx_pid"
  if [[ ${BENCH_KEEP_TMP:-} == 1 ]]; then
    echo "bench: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

show_log() {  # show_log FILE: last lines of a server's log, indented
  [[ -s $1 ]] && tail -n 20 "$1" | sed 's/^/    /' >&2
  return 0
}

# ---- mtapi ------------------------------------------------------------------

MTAPI_PORT=$(bench_free_port) || bench_die "no free port found"
# /health uses neither PostgreSQL nor signing keys, but `mtapi serve` insists on
# their settings. Other MTAPI_* variables in the environment are passed on;
# when these two are missing, the database URL points at a local port nothing
# listens on (the tenant catalog refresher retries it with back-off, at most
# every 5 s) and the signing secret is a throwaway one.
db_note="MTAPI_DATABASE_URL from the environment"
if [[ -z ${MTAPI_DATABASE_URL:-} ]]; then
  MTAPI_DATABASE_URL=postgresql://bench@127.0.0.1:$(bench_free_port)/bench
  db_note="no database (/health does not use it)"
fi
if [[ -z ${MTAPI_JWT_SECRET:-} && -z ${MTAPI_JWT_KEYS:-} ]]; then
  MTAPI_JWT_SECRET=bench-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
fi
export MTAPI_DATABASE_URL MTAPI_JWT_SECRET
if [[ $ACCESS_LOG == on ]]; then
  mtapi_out=/dev/null  # the JSON log lines (access log included) go to stdout
else
  mtapi_out=$TMP/mtapi.out
fi
MTAPI_LISTEN=127.0.0.1:$MTAPI_PORT MTAPI_THREADS=$THREADS MTAPI_ACCESS_LOG=$ACCESS_LOG \
  MTAPI_LOG_LEVEL=info MTAPI_DRAIN_TIMEOUT=2s \
  "${server_prefix[@]}" "$MTAPI_BIN" serve >"$mtapi_out" 2>"$TMP/mtapi.err" &
mtapi_pid=$!
MTAPI_URL=http://127.0.0.1:$MTAPI_PORT/health
if ! bench_wait_http "$MTAPI_URL" "$mtapi_pid" 15; then
  echo "bench: mtapi did not answer on $MTAPI_URL" >&2
  show_log "$TMP/mtapi.err"
  [[ -f $TMP/mtapi.out ]] && show_log "$TMP/mtapi.out"
  exit 1
fi

# ---- nginx ------------------------------------------------------------------

NGINX_PORT=$(bench_free_port) || bench_die "no free port found"
while [[ $NGINX_PORT == "$MTAPI_PORT" ]]; do NGINX_PORT=$(bench_free_port); done
NGINX_DIR=$TMP/nginx
mkdir -p "$NGINX_DIR"
if [[ $ACCESS_LOG == on ]]; then
  nginx_access_log="$NGINX_DIR/access.log mtapi_like buffer=32k flush=200ms"
else
  nginx_access_log=off
fi
sed -e "s|@WORKERS@|$THREADS|g" -e "s|@DIR@|$NGINX_DIR|g" -e "s|@PORT@|$NGINX_PORT|g" \
  -e "s|@ACCESS_LOG@|$nginx_access_log|g" "$NGINX_TEMPLATE" >"$NGINX_DIR/nginx.conf"
"${server_prefix[@]}" "$NGINX_BIN" -p "$NGINX_DIR/" -e "$NGINX_DIR/error.log" -c "$NGINX_DIR/nginx.conf" \
  >"$TMP/nginx.out" 2>&1 &
nginx_pid=$!
NGINX_URL=http://127.0.0.1:$NGINX_PORT/health
if ! bench_wait_http "$NGINX_URL" "$nginx_pid" 15; then
  echo "bench: nginx did not answer on $NGINX_URL" >&2
  show_log "$TMP/nginx.out"
  show_log "$NGINX_DIR/error.log"
  exit 1
fi

# ---- same response from both? -----------------------------------------------

# check_response NAME URL: the body and Content-Type must be those of mtapi's
# /health; prints the header names and the response size.
EXPECTED_BODY='{"status":"ok"}'
EXPECTED_TYPE='application/json; charset=utf-8'
check_response() {
  local name=$1 url=$2 headers body ctype names size
  headers=$TMP/$name.headers
  body=$(curl -fsS --max-time 2 -D "$headers" "$url") || bench_die "$name: GET $url failed"
  ctype=$(awk -F': ' 'tolower($1) == "content-type" { sub(/\r$/, "", $2); print $2 }' "$headers")
  [[ $body == "$EXPECTED_BODY" ]] || bench_die "$name: body is '$body', expected '$EXPECTED_BODY'"
  [[ $ctype == "$EXPECTED_TYPE" ]] || bench_die "$name: Content-Type is '$ctype', expected '$EXPECTED_TYPE'"
  names=$(awk -F': ' 'NR > 1 && NF > 1 { printf "%s%s", sep, $1; sep = ", " }' "$headers")
  size=$(($(wc -c <"$headers") + ${#body}))
  printf '  %-6s %4d bytes: %s\n' "$name" "$size" "$names"
}

# ---- run --------------------------------------------------------------------

nginx_version=$("$NGINX_BIN" -v 2>&1 | sed 's|.*nginx/||')
mtapi_version=$("$MTAPI_BIN" --version 2>/dev/null | awk '{ print $2 }')
if [[ $ACCESS_LOG == on ]]; then
  log_note="on for both (mtapi: JSON lines to /dev/null; nginx: similar JSON lines to a file, 32k buffer)"
else
  log_note="off for both servers"
fi
pin_note=
[[ -n $SERVER_CPUS ]] && pin_note+=" servers on CPU $SERVER_CPUS;"
[[ -n $WRK_CPUS ]] && pin_note+=" wrk on CPU $WRK_CPUS;"

echo "GET /health: mtapi $mtapi_version vs nginx $nginx_version ($(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo "  server threads/workers: $THREADS   wrk: $WRK_THREADS thread(s), $CONNS connections, keep-alive"
echo "  rounds: $ROUNDS x $DURATION per server, alternating; warm-up: ${WARMUP:-none}${pin_note:+;$pin_note}"
echo "  access logs: $log_note; mtapi: $db_note"
echo "responses:"
check_response mtapi "$MTAPI_URL"
check_response nginx "$NGINX_URL"

CLK_TCK=$(getconf CLK_TCK)

# run_wrk NAME URL DURATION OUT: one wrk run, in the background so that a
# signal interrupts the wait at once. Appends to OUT a "BENCH_CPU" line with
# the CPU time the server used meanwhile: cores (CPU seconds per second of the
# run), cpu_us_per_req (CPU microseconds per request, user + system) and its
# user and system parts.
run_wrk() {
  local name=$1 url=$2 dur=$3 out=$4 st=0 pid_var=${1}_pid ticks0 ticks1
  ticks0=$(bench_cpu_ticks "${!pid_var}")
  "${wrk_prefix[@]}" "$WRK_BIN" -t"$WRK_THREADS" -c"$CONNS" -d"$dur" --latency -s "$LUA_SCRIPT" "$url" \
    >"$out" 2>&1 &
  wrk_pid=$!
  wait "$wrk_pid" || st=$?
  wrk_pid=
  ticks1=$(bench_cpu_ticks "${!pid_var}")
  if ((st != 0)) || ! grep -q '^BENCH ' "$out"; then
    echo "bench: wrk against $name failed (exit $st):" >&2
    show_log "$out"
    exit 1
  fi
  if ! kill -0 "${!pid_var}" 2>/dev/null; then
    echo "bench: $name exited during the run" >&2
    exit 1
  fi
  local n secs
  n=$(bench_field requests "$out")
  secs=$(bench_field duration_s "$out")
  awk -v t0="$ticks0" -v t1="$ticks1" -v hz="$CLK_TCK" -v n="$n" -v secs="$secs" 'BEGIN {
      split(t0, a, " "); split(t1, b, " ")
      u = (b[1] - a[1]) / hz; s = (b[2] - a[2]) / hz
      if (n <= 0) n = 1
      printf "BENCH_CPU cores=%.2f cpu_us_per_req=%.2f user_us_per_req=%.2f sys_us_per_req=%.2f\n",
        (secs > 0 ? (u + s) / secs : 0), (u + s) * 1e6 / n, u * 1e6 / n, s * 1e6 / n
    }' >>"$out"
}

if [[ -n $WARMUP ]]; then
  run_wrk mtapi "$MTAPI_URL" "$WARMUP" "$TMP/warmup-mtapi.txt"
  run_wrk nginx "$NGINX_URL" "$WARMUP" "$TMP/warmup-nginx.txt"
fi

echo "rounds:"
for ((r = 1; r <= ROUNDS; r++)); do
  for name in mtapi nginx; do
    url_var=${name^^}_URL
    out=$TMP/round-$r-$name.txt
    run_wrk "$name" "${!url_var}" "$DURATION" "$out"
    errors=$(awk '$1 == "BENCH" { s = 0
        for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] ~ /errors$|^timeouts$/) s += kv[2] }
        print s }' "$out")
    printf '  %d/%d %-6s rps=%-9s p50_ms=%-6s p99_ms=%-6s max_ms=%-7s cores=%s us/req=%s (usr %s sys %s) errors=%s\n' \
      "$r" "$ROUNDS" "$name" "$(bench_field rps "$out")" "$(bench_field p50_ms "$out")" \
      "$(bench_field p99_ms "$out")" "$(bench_field max_ms "$out")" "$(bench_field cores "$out")" \
      "$(bench_field cpu_us_per_req "$out")" "$(bench_field user_us_per_req "$out")" \
      "$(bench_field sys_us_per_req "$out")" "$errors"
    echo "$errors" >>"$TMP/errors-$name"
  done
done

# ---- summary ----------------------------------------------------------------

median_of() {  # median_of NAME FIELD
  local f
  for f in "$TMP"/round-*-"$1".txt; do bench_field "$2" "$f"; done | bench_median
}

echo
printf '%-7s %-8s %-6s %-12s %-15s %-15s %-18s %s\n' server threads conns "rps(median)" "p99_ms(median)" \
  "p50_ms(median)" "cpu_us/req(median)" "errors(total)"
for name in mtapi nginx; do
  rps=$(median_of "$name" rps)
  p99=$(median_of "$name" p99_ms)
  p50=$(median_of "$name" p50_ms)
  cpu=$(median_of "$name" cpu_us_per_req)
  errs=$(awk '{ s += $1 } END { print s + 0 }' "$TMP/errors-$name")
  printf '%-7s %-8s %-6s %-12.0f %-15.3f %-15.3f %-18.2f %s\n' "$name" "$THREADS" "$CONNS" "$rps" "$p99" "$p50" \
    "$cpu" "$errs"
  if [[ $name == mtapi ]]; then
    rps_mtapi=$rps p99_mtapi=$p99 cpu_mtapi=$cpu
  else
    rps_nginx=$rps p99_nginx=$p99 cpu_nginx=$cpu
  fi
done
awk -v a="$rps_mtapi" -v b="$rps_nginx" 'BEGIN { printf "ratio mtapi/nginx rps = %.2f\n", (b > 0 ? a / b : 0) }'
awk -v a="$p99_mtapi" -v b="$p99_nginx" -v c="$cpu_mtapi" -v d="$cpu_nginx" 'BEGIN {
    printf "ratio mtapi/nginx p99 = %.2f   cpu per request = %.2f\n", (b > 0 ? a / b : 0), (d > 0 ? c / d : 0) }'
echo "access logs: $log_note; load average now $(cut -d' ' -f1-3 /proc/loadavg)"

# A server that got much less CPU than it could use was competing with other
# work on the machine: its throughput says little then.
cpus=$(nproc)
expect=$((THREADS < cpus - 1 ? THREADS : (cpus > 1 ? cpus - 1 : 1)))
for name in mtapi nginx; do
  cores=$(median_of "$name" cores)
  if awk -v c="$cores" -v e="$expect" 'BEGIN { exit !(c < 0.75 * e) }'; then
    echo "warning: $name used only $cores cores (median) of the $expect it could: the machine is busy," \
      "compare the cpu per request ratio, or run again"
  fi
done
