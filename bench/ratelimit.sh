#!/usr/bin/env bash
# What the rate limiter costs: GET /api/v1/vehicles/{id} (wrk, tokens of 8 tenants) against three
# mtapi servers that differ only in MTAPI_RATE_LIMIT_BACKEND — off, redis (the dev Redis on
# loopback) and memory — measured in alternating rounds in one run. Prints the median requests/s,
# p99 and mtapi CPU per request of each, and each backend's throughput cost against `off`
# (target: at most 10 % with Redis on loopback). `redis-exact` (not run by default) is the Redis
# backend with MTAPI_RATE_LIMIT_RESERVE=0: one script run per request.
#
# The bench tenants' buckets are far larger than the load, so every decision is made and admits:
# the figure is the price of deciding, not of refusing. At the end each Redis server's script runs
# and the requests it decided from reservations are printed (from /metrics).
#
# Uses the dev services (scripts/services up, .var/dev.env) and `mtapi migrate`; creates its
# tenants (slugs rlbench-<run>-<n>) and deletes them at the end, also after a failure or Ctrl-C.
#
#   bench/ratelimit.sh                                   (or: make bench-ratelimit)
#   BENCH_ROUNDS=5 BENCH_THREADS=2 bench/ratelimit.sh
#   BENCH_LIMITERS="off redis" bench/ratelimit.sh
#   BENCH_LIMITERS="off redis redis-exact" bench/ratelimit.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

THREADS=${BENCH_THREADS:-1}
CONNS=${BENCH_CONNECTIONS:-64}
DURATION=${BENCH_DURATION:-10}
DURATION=${DURATION%s}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2}
WARMUP=${WARMUP%s}
TENANTS=${BENCH_TENANTS:-8}
VEHICLES=${BENCH_VEHICLES:-200}
LIMITERS=${BENCH_LIMITERS:-off redis memory}
MTAPI_BIN=${MTAPI_BIN:-$ROOT/build/release/mtapi}
WRK_BIN=${WRK_BIN:-wrk}
PSQL_BIN=${PSQL_BIN:-psql}
TARGET_COST_PCT=10

[[ $DURATION =~ ^[0-9]+$ && $ROUNDS =~ ^[0-9]+$ && $WARMUP =~ ^[0-9]+$ && $TENANTS =~ ^[0-9]+$ ]] ||
  bench_die "BENCH_DURATION, BENCH_ROUNDS, BENCH_WARMUP (seconds) and BENCH_TENANTS must be whole numbers"
[[ -x $MTAPI_BIN ]] || bench_die "$MTAPI_BIN not found: build it first (make build)"
command -v "$WRK_BIN" >/dev/null || bench_die "wrk not found (scripts/bootstrap installs it)"
for l in $LIMITERS; do
  [[ $l == off || $l == redis || $l == redis-exact || $l == memory ]] || bench_die "unknown limiter '$l' in BENCH_LIMITERS"
done

"$ROOT/scripts/services" up >/dev/null
set -a
# shellcheck source=/dev/null
. "$ROOT/.var/dev.env"
set +a
[[ -n ${MTAPI_REDIS_URL:-} ]] || bench_die "the dev services wrote no MTAPI_REDIS_URL"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mtapi-bench-rl.XXXXXX")
declare -A PID PORT
RUN_TAG=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
SLUG_PREFIX=rlbench-$RUN_TAG-
cp "$MTAPI_BIN" "$TMP/mtapi"
MTAPI=$TMP/mtapi
psql_app() { "$PSQL_BIN" -X -q -At -v ON_ERROR_STOP=1 -d "$MTAPI_DATABASE_URL" "$@"; }

cleanup() {
  local st=$? l slug
  trap - EXIT INT TERM
  for l in "${!PID[@]}"; do bench_stop "${PID[$l]}"; done
  while read -r slug; do
    [[ -n $slug ]] && "$MTAPI" tenant delete "$slug" >/dev/null 2>&1
  done < <(psql_app -c "SELECT slug FROM platform.tenants WHERE starts_with(slug, '$SLUG_PREFIX')" 2>/dev/null || true)
  rm -rf "$TMP"
  exit "$st"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$MTAPI" migrate >"$TMP/migrate.out" 2>&1 || { cat "$TMP/migrate.out" >&2; bench_die "mtapi migrate failed"; }

# ---- tenants: vehicles seeded as the tenant role, buckets larger than any load
PASSWORD=rl-bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
echo "setting up $TENANTS tenants x $VEHICLES vehicles ..."
for ((i = 1; i <= TENANTS; i++)); do
  "$MTAPI" tenant create --slug "$SLUG_PREFIX$i" --name "mtapi rate limit bench #$i" \
    --admin-email "admin@t$i.rl.bench" --admin-password "$PASSWORD" >"$TMP/create.out" 2>&1 ||
    { cat "$TMP/create.out" >&2; bench_die "mtapi tenant create failed"; }
  IFS='|' read -r schema role < <(psql_app -c "SELECT schema_name, role_name FROM platform.tenants WHERE slug = '$SLUG_PREFIX$i'")
  psql_app -v role="$role" -v schema="$schema" -v n="$VEHICLES" >"$TMP/ids-$i" <<'SQL'
BEGIN;
SET LOCAL ROLE :"role";
SET LOCAL search_path = :"schema", pg_temp;
INSERT INTO vehicles (id, plate, vin, make, model, year, status, odometer_km)
SELECT gen_random_uuid(), 'RL-' || lpad(g::text, 6, '0'), 'WVWZZZ1JZXW' || lpad(g::text, 6, '0'), 'Volvo', 'FH', 2020, 'active', g
  FROM generate_series(1, :n) AS g;
ANALYZE vehicles;
SELECT id FROM vehicles;
COMMIT;
SQL
done
psql_app -c "UPDATE platform.tenants SET rate_limit_capacity = 1000000000, rate_limit_refill_per_sec = 1000000000
             WHERE starts_with(slug, '$SLUG_PREFIX')"

# ---- one server per limiter backend
for l in $LIMITERS; do
  PORT[$l]=$(bench_free_port) || bench_die "no free port found"
  MTAPI_LISTEN=127.0.0.1:${PORT[$l]} MTAPI_THREADS=$THREADS MTAPI_ACCESS_LOG=off MTAPI_LOG_LEVEL=warn \
    MTAPI_DRAIN_TIMEOUT=2s MTAPI_JWT_TTL=2h MTAPI_RATE_LIMIT_BACKEND=${l%-exact} \
    MTAPI_RATE_LIMIT_RESERVE=$([[ $l == redis-exact ]] && echo 0 || echo 64) \
    "$MTAPI" serve >"$TMP/mtapi-$l.out" 2>&1 &
  PID[$l]=$!
  bench_wait_http "http://127.0.0.1:${PORT[$l]}/health" "${PID[$l]}" 15 ||
    { cat "$TMP/mtapi-$l.out" >&2; bench_die "mtapi ($l) did not start"; }
done
first=${LIMITERS%% *}
: >"$TMP/targets"
for ((i = 1; i <= TENANTS; i++)); do
  body=$(curl -sS --max-time 30 -H 'Content-Type: application/json' \
    -d "{\"tenant\":\"$SLUG_PREFIX$i\",\"email\":\"admin@t$i.rl.bench\",\"password\":\"$PASSWORD\"}" \
    "http://127.0.0.1:${PORT[$first]}/api/v1/auth/login")
  token=$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' <<<"$body")
  [[ -n $token ]] || bench_die "login failed: $body"
  echo "$token $(tr '\n' ' ' <"$TMP/ids-$i")" >>"$TMP/targets"
done

# Each server answers the same request; the limited ones with RateLimit-* fields.
read -r token id _ <"$TMP/targets"
for l in $LIMITERS; do
  code=$(curl -sS -o /dev/null -D "$TMP/head-$l" -w '%{http_code}' -H "Authorization: Bearer $token" \
    "http://127.0.0.1:${PORT[$l]}/api/v1/vehicles/$id")
  [[ $code == 200 ]] || bench_die "GET /api/v1/vehicles/$id on the $l server: HTTP $code"
  if [[ $l == off ]]; then
    ! grep -qi '^ratelimit-limit:' "$TMP/head-$l" || bench_die "the off server sent RateLimit-Limit"
  else
    grep -qi '^ratelimit-limit: 1000000000' "$TMP/head-$l" || bench_die "the $l server sent no RateLimit-Limit"
  fi
done

echo "mtapi ${THREADS} thread(s), $CONNS connections, ${DURATION}s x $ROUNDS rounds per backend (alternating)," \
  "GET /api/v1/vehicles/{id} over $TENANTS tenants; load: $(cut -d' ' -f1-3 /proc/loadavg)"

run_wrk() {  # run_wrk LIMITER SECONDS OUT
  local l=$1 secs=$2 out=$3 c0 c1
  c0=$(bench_cpu_ticks "${PID[$l]}")
  "$WRK_BIN" -t1 -c"$CONNS" -d"${secs}s" --latency -s "$ROOT/bench/wrk/fleet_get.lua" \
    "http://127.0.0.1:${PORT[$l]}" -- "$TMP/targets" >"$out" 2>&1 || { cat "$out" >&2; bench_die "wrk failed"; }
  c1=$(bench_cpu_ticks "${PID[$l]}")
  awk -v t0="$c0" -v t1="$c1" -v hz="$(getconf CLK_TCK)" -v n="$(bench_field requests "$out")" 'BEGIN {
      split(t0, a, " "); split(t1, b, " ")
      printf "BENCH_CPU us_per_req=%.1f\n", (b[1] - a[1] + b[2] - a[2]) / hz * 1e6 / (n > 0 ? n : 1) }' >>"$out"
}

for l in $LIMITERS; do run_wrk "$l" "$WARMUP" "$TMP/warm-$l"; done
for ((r = 1; r <= ROUNDS; r++)); do
  for l in $LIMITERS; do
    out=$TMP/round-$r-$l
    run_wrk "$l" "$DURATION" "$out"
    errors=$(bench_field status_errors "$out")
    printf '  %d/%d %-11s rps=%-9s p99_ms=%-7s cpu_us/req=%-6s non-2xx=%s\n' "$r" "$ROUNDS" "$l" \
      "$(bench_field rps "$out")" "$(bench_field p99_ms "$out")" \
      "$(awk -F= '/^BENCH_CPU/ { print $2 }' "$out")" "${errors:-?}"
  done
done

median_of() {  # median_of LIMITER FIELD
  local f
  for f in "$TMP"/round-*-"$1"; do
    if [[ $2 == cpu ]]; then awk -F= '/^BENCH_CPU/ { print $2 }' "$f"; else bench_field "$2" "$f"; fi
  done | bench_median
}

printf '\n%-11s %12s %10s %12s %10s\n' limiter 'rps(median)' 'p99_ms' 'cpu_us/req' 'cost'
declare -A RPS
for l in $LIMITERS; do RPS[$l]=$(median_of "$l" rps); done
for l in $LIMITERS; do
  cost=-
  if [[ -n ${RPS[off]:-} && $l != off ]]; then
    cost=$(awk -v a="${RPS[$l]}" -v b="${RPS[off]}" 'BEGIN { printf "%.1f%%", (1 - a / b) * 100 }')
  fi
  printf '%-11s %12.0f %10s %12s %10s\n' "$l" "${RPS[$l]}" "$(median_of "$l" p99_ms)" "$(median_of "$l" cpu)" "$cost"
done
if [[ -n ${RPS[off]:-} && -n ${RPS[redis]:-} ]]; then
  awk -v a="${RPS[redis]}" -v b="${RPS[off]}" -v t="$TARGET_COST_PCT" 'BEGIN {
      c = (1 - a / b) * 100
      printf "target: redis limiter costs <= %d%% of throughput: %s (%.1f%%)\n", t, (c <= t ? "met" : "NOT met"), c }'
fi
for l in $LIMITERS; do
  [[ $l == redis* ]] || continue
  curl -sS --max-time 10 "http://127.0.0.1:${PORT[$l]}/metrics" >"$TMP/metrics-$l" || continue
  awk -v l="$l" '$1 == "mtapi_ratelimit_redis_batches_total" { b = $2 }
      $1 == "mtapi_ratelimit_redis_batched_decisions_total" { d = $2 }
      $1 == "mtapi_ratelimit_redis_reserved_decisions_total" { r = $2 }
      END { if (d > 0) printf "%s: %d decisions, %d script runs (%.1f requests per run), %d from reservations\n", l, d, b, d / (b > 0 ? b : 1), r }' \
    "$TMP/metrics-$l"
done
