#!/usr/bin/env bash
# Load test of the fleet API: GET /api/v1/vehicles/{id}, GET /api/v1/vehicles?limit=20 and
# POST /api/v1/vehicles with the tokens of 8 tenants (wrk), each next to pgbench running the same
# tenant transaction (the same statements in one pipeline, named prepared statements) against the
# same database, measured alternately in one run. Prints the median requests/s (transactions/s)
# and p99 latency of each, the ratio mtapi/pgbench and the verdict on the target for GET by id
# (>= 0.75 x pgbench, p99 <= 5 ms at 64 connections).
#
# Uses the dev services (scripts/services up, .var/dev.env) and `mtapi migrate`; creates its
# tenants (slugs fleetbench-<run>-<n>) with `mtapi tenant create`, seeds their vehicles in SQL as
# the tenant role, and deletes them again at the end, also after a failure or Ctrl-C. See
# bench/README.md ("Fleet API benchmark") for the knobs and how to read the figures.
#
#   bench/fleet.sh                                  (or: make bench-fleet)
#   BENCH_THREADS="1 2" bench/fleet.sh              (one server size after the other)
#   BENCH_ENDPOINTS=get BENCH_ROUNDS=5 bench/fleet.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

THREADS_LIST=${BENCH_THREADS:-1}
CONNS=${BENCH_CONNECTIONS:-64}
DURATION=${BENCH_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2s}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
ENDPOINTS=${BENCH_ENDPOINTS:-get list post}
TENANTS=${BENCH_TENANTS:-8}
WRK_TENANTS=${BENCH_WRK_TENANTS:-$TENANTS}
VEHICLES=${BENCH_VEHICLES:-1000}
PG_CLIENTS=${BENCH_PGBENCH_CLIENTS:-$CONNS}
PG_IDS=${BENCH_PGBENCH_IDS:-16}
MTAPI_BIN=${MTAPI_BIN:-$ROOT/build/release/mtapi}
WRK_BIN=${WRK_BIN:-wrk}
PGBENCH_BIN=${PGBENCH_BIN:-pgbench}
PSQL_BIN=${PSQL_BIN:-psql}
TARGET_RATIO=0.75
TARGET_P99_MS=5
TARGET_CONNS=64

declare -A LABEL=(
  [get]='GET /api/v1/vehicles/{id}'
  [list]='GET /api/v1/vehicles?limit=20'
  [post]='POST /api/v1/vehicles'
)

# ---- arguments --------------------------------------------------------------

is_uint() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0)); }
# Seconds of a duration given as 10, 10s, 1m (0 allowed when $2 is "zero-ok").
to_seconds() {
  local v=$1
  if [[ $v =~ ^([0-9]+)s?$ ]]; then
    v=${BASH_REMATCH[1]}
  elif [[ $v =~ ^([0-9]+)m$ ]]; then
    v=$((BASH_REMATCH[1] * 60))
  else
    return 1
  fi
  ((v > 0)) || [[ ${2:-} == zero-ok ]] || return 1
  echo "$((10#$v))"
}

THREADS_LIST=${THREADS_LIST//,/ }
for t in $THREADS_LIST; do
  is_uint "$t" || bench_die "BENCH_THREADS must be positive integers, e.g. 1 or \"1 2\" (got '$THREADS_LIST')"
done
[[ -n ${THREADS_LIST// /} ]] || bench_die "BENCH_THREADS is empty"
is_uint "$CONNS" || bench_die "BENCH_CONNECTIONS must be a positive integer (got '$CONNS')"
is_uint "$ROUNDS" || bench_die "BENCH_ROUNDS must be a positive integer (got '$ROUNDS')"
is_uint "$WRK_THREADS" || bench_die "BENCH_WRK_THREADS must be a positive integer (got '$WRK_THREADS')"
((CONNS >= WRK_THREADS)) || bench_die "BENCH_CONNECTIONS ($CONNS) must be >= BENCH_WRK_THREADS ($WRK_THREADS)"
if ! is_uint "$TENANTS" || ((TENANTS > 64)); then bench_die "BENCH_TENANTS must be 1-64 (got '$TENANTS')"; fi
if ! is_uint "$WRK_TENANTS" || ((WRK_TENANTS > TENANTS)); then
  bench_die "BENCH_WRK_TENANTS must be 1-$TENANTS (got '$WRK_TENANTS')"
fi
is_uint "$VEHICLES" || bench_die "BENCH_VEHICLES must be a positive integer (got '$VEHICLES')"
if ! is_uint "$PG_CLIENTS" || ((PG_CLIENTS < TENANTS)); then
  bench_die "BENCH_PGBENCH_CLIENTS must be an integer >= BENCH_TENANTS ($TENANTS) (got '$PG_CLIENTS')"
fi
if ! is_uint "$PG_IDS" || ((PG_IDS > VEHICLES || PG_IDS > 64)); then
  bench_die "BENCH_PGBENCH_IDS must be 1-64 and <= BENCH_VEHICLES (got '$PG_IDS')"
fi
DURATION_S=$(to_seconds "$DURATION") || bench_die "BENCH_DURATION must look like 10, 10s or 1m (got '$DURATION')"
WARMUP_S=$(to_seconds "$WARMUP" zero-ok) || bench_die "BENCH_WARMUP must look like 2, 2s or 0 (got '$WARMUP')"
ENDPOINTS=${ENDPOINTS//,/ }
for e in $ENDPOINTS; do
  [[ -n ${LABEL[$e]:-} ]] || bench_die "BENCH_ENDPOINTS takes get, list and post (got '$ENDPOINTS')"
done
[[ -n ${ENDPOINTS// /} ]] || bench_die "BENCH_ENDPOINTS is empty"

[[ -x $MTAPI_BIN ]] || bench_die "$MTAPI_BIN not found: build it first (make build)"
command -v "$WRK_BIN" >/dev/null || bench_die "wrk not found: apt-get install wrk, or set WRK_BIN"
command -v "$PGBENCH_BIN" >/dev/null || bench_die "pgbench not found (postgresql-client), or set PGBENCH_BIN"
command -v "$PSQL_BIN" >/dev/null || bench_die "psql not found (postgresql-client), or set PSQL_BIN"
command -v curl >/dev/null || bench_die "curl not found"
pgbench_major=$("$PGBENCH_BIN" --version | sed -n 's/.* \([0-9][0-9]*\)[.0-9]*.*/\1/p' | head -n 1)
((${pgbench_major:-0} >= 14)) || bench_die "pgbench 14 or newer is needed for \\startpipeline (found: $("$PGBENCH_BIN" --version))"

# ---- processes and cleanup --------------------------------------------------

cd "$ROOT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mtapi-bench-fleet.XXXXXX")
RUN_TAG=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
SLUG_PREFIX=fleetbench-$RUN_TAG-
TENANT_NAME="mtapi fleet bench $RUN_TAG"
services_were_running=0
if scripts/services status >/dev/null 2>&1; then services_were_running=1; fi
mtapi_pid=
wrk_pid=
pg_pids=()
tenants_created=0

cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM HUP
  if [[ -n $wrk_pid ]]; then
    kill -TERM "$wrk_pid" 2>/dev/null
    wait "$wrk_pid" 2>/dev/null
  fi
  local p
  for p in "${pg_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pg_pids[@]}"; do wait "$p" 2>/dev/null; done
  bench_stop "$mtapi_pid"
  if ((tenants_created)); then
    if [[ ${BENCH_KEEP_TENANTS:-} == 1 ]]; then
      echo "bench: kept the tenants ${SLUG_PREFIX}* (the next run removes them)" >&2
    else
      remove_tenants "$SLUG_PREFIX"
    fi
  fi
  if [[ ${BENCH_KEEP_TMP:-} == 1 ]]; then
    echo "bench: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  if [[ $services_were_running == 0 && ${BENCH_KEEP_SERVICES:-} != 1 ]]; then
    scripts/services down >/dev/null 2>&1 || echo "bench: scripts/services down failed" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

show_log() {  # show_log FILE: last lines of a log, indented
  [[ -s $1 ]] && tail -n 20 "$1" | sed 's/^/    /' >&2
  return 0
}

# ---- database ---------------------------------------------------------------

scripts/services up >/dev/null
set -a
# shellcheck source=/dev/null
. .var/dev.env
set +a
# A private copy: a rebuild during the run must not swap the binary under the later commands.
cp "$MTAPI_BIN" "$TMP/mtapi"
MTAPI=$TMP/mtapi
"$MTAPI" migrate >"$TMP/migrate.out" 2>&1 || { show_log "$TMP/migrate.out"; bench_die "mtapi migrate failed"; }

# One run at a time per checkout: a second one would remove the first one's tenants as stale.
exec 8>"$ROOT/.var/bench-fleet.lock"
flock -n 8 || bench_die "another bench/fleet.sh is running on this checkout"

psql_app() { "$PSQL_BIN" -X -q -At -v ON_ERROR_STOP=1 -d "$MTAPI_DATABASE_URL" "$@"; }

# remove_tenants SLUG_PREFIX: deletes the bench tenants whose slug starts with SLUG_PREFIX (and
# whose name says they are the fleet benchmark's) with `mtapi tenant delete`.
remove_tenants() {
  local prefix=$1 slug n=0 left
  while read -r slug; do
    [[ -n $slug ]] || continue
    if "$MTAPI" tenant delete "$slug" >/dev/null 2>"$TMP/delete.err"; then
      n=$((n + 1))
    else
      echo "bench: mtapi tenant delete $slug failed:" >&2
      show_log "$TMP/delete.err"
    fi
  done < <(psql_app -v prefix="$prefix" <<'SQL'
SELECT slug FROM platform.tenants
 WHERE starts_with(slug, :'prefix') AND name LIKE 'mtapi fleet bench %' ORDER BY slug;
SQL
  )
  left=$(psql_app -v prefix="$prefix" <<'SQL'
SELECT count(*) FROM platform.tenants WHERE starts_with(slug, :'prefix') AND name LIKE 'mtapi fleet bench %';
SQL
  )
  echo "cleanup: $n bench tenant(s) deleted, $left left behind"
}

tenants_before=$(psql_app -c 'SELECT count(*) FROM platform.tenants')
stale=$(psql_app -c "SELECT count(*) FROM platform.tenants WHERE slug LIKE 'fleetbench-%' AND name LIKE 'mtapi fleet bench %'")
if ((stale > 0)); then
  echo "removing $stale tenant(s) left by an earlier run"
  remove_tenants fleetbench-
  tenants_before=$(psql_app -c 'SELECT count(*) FROM platform.tenants')
fi

# ---- tenants and their data -------------------------------------------------

PASSWORD=fleet-bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
declare -a SLUG SCHEMA ROLE USER_ID TOKEN
setup_start=$(date +%s.%N)
tenants_created=1
for ((i = 1; i <= TENANTS; i++)); do
  SLUG[i]=$SLUG_PREFIX$i
  "$MTAPI" tenant create --slug "${SLUG[i]}" --name "$TENANT_NAME #$i" --admin-email "admin@t$i.fleet.bench" \
    --admin-password "$PASSWORD" >"$TMP/create.out" 2>&1 ||
    { show_log "$TMP/create.out"; bench_die "mtapi tenant create ${SLUG[i]} failed"; }
  IFS='|' read -r 'SCHEMA[i]' 'ROLE[i]' < <(psql_app -v slug="${SLUG[i]}" <<'SQL'
SELECT schema_name, role_name FROM platform.tenants WHERE slug = :'slug';
SQL
  )
  # The vehicles as the tenant role in its schema, as a request would write them; created_at
  # spread over the past so that the list's order is that of a real table. Prints the admin's
  # id and the vehicle ids.
  read -r -a row < <(psql_app -v role="${ROLE[i]}" -v schema="${SCHEMA[i]}" -v n="$VEHICLES" <<'SQL'
BEGIN;
SET LOCAL ROLE :"role";
SET LOCAL search_path = :"schema", pg_temp;
INSERT INTO vehicles (id, plate, vin, make, model, year, status, odometer_km, created_at, updated_at)
SELECT gen_random_uuid(), 'FB-' || lpad(g::text, 6, '0'), 'WVWZZZ1JZXW' || lpad(g::text, 6, '0'),
       (ARRAY['Volvo', 'Scania', 'MAN', 'DAF'])[1 + g % 4], 'Series ' || (1 + g % 7), 2000 + g % 25,
       (ARRAY['active', 'maintenance', 'retired'])[1 + g % 3], g * 997,
       now() - make_interval(mins => g), now() - make_interval(mins => g)
  FROM generate_series(1, :n) AS g;
ANALYZE vehicles;
SELECT (SELECT id::text FROM users ORDER BY created_at LIMIT 1) || ' '
       || string_agg(id::text, ' ' ORDER BY created_at DESC, id DESC) FROM vehicles;
COMMIT;
SQL
  )
  USER_ID[i]=${row[0]}
  printf '%s\n' "${row[@]:1}" >"$TMP/ids-$i"
  (($(wc -l <"$TMP/ids-$i") == VEHICLES)) || bench_die "seeding ${SLUG[i]} failed"
done
# No bench tenant may be slowed down by a per-tenant rate limit: the limiter (when the server has
# one) still runs, but always admits.
psql_app -v prefix="$SLUG_PREFIX" <<'SQL'
UPDATE platform.tenants SET rate_limit_capacity = 1000000000, rate_limit_refill_per_sec = 1000000000
 WHERE starts_with(slug, :'prefix');
SQL
setup_s=$(awk -v a="$setup_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

# ---- pgbench scripts --------------------------------------------------------

# The GET script chooses among PG_IDS vehicles of its tenant: pgbench variables cannot index a
# list of strings, so the :vehicle_id line becomes an \if chain over vehicle_id_1..N (each a
# statement of its own, prepared like the others before the first transaction).
mkdir -p "$TMP/pgbench" "$TMP/pglog"
awk -v n="$PG_IDS" '
  index($0, ":vehicle_id") {
    printf "\\set vk random(1, %d)\n", n
    for (k = 1; k <= n; k++) {
      line = $0
      gsub(/:vehicle_id/, ":vehicle_id_" k, line)
      if (n == 1) { print line; break }
      printf "%s\n%s\n", (k == 1 ? "\\if :vk = 1" : (k < n ? "\\elif :vk = " k : "\\else")), line
    }
    if (n > 1) print "\\endif"
    next
  }
  { print }' "$ROOT/bench/pgbench/vehicle_get.sql" >"$TMP/pgbench/get.sql"
cp "$ROOT/bench/pgbench/vehicles_list.sql" "$TMP/pgbench/list.sql"
cp "$ROOT/bench/pgbench/vehicle_post.sql" "$TMP/pgbench/post.sql"

# pgbench_args ENDPOINT I: the -D variables of tenant I for ENDPOINT's script.
pgbench_args() {
  local ep=$1 i=$2 k step ids
  PGARGS=(-D "schema=${SCHEMA[i]}, pg_temp" -D "role=${ROLE[i]}" -D "user_id=${USER_ID[i]}")
  case $ep in
    get)
      PGARGS+=(-D 'roles={admin,dispatcher,viewer}')
      mapfile -t ids <"$TMP/ids-$i"
      step=$((VEHICLES / PG_IDS))
      for ((k = 1; k <= PG_IDS; k++)); do PGARGS+=(-D "vehicle_id_$k=${ids[(k - 1) * step]}"); done
      ;;
    list) PGARGS+=(-D 'roles={admin,dispatcher,viewer}' -D limit=21) ;;
    post)
      PGARGS+=(-D 'roles={admin,dispatcher}' -D "run=$((pg_run_counter))" -D n=0 -D vin=WVWZZZ1JZXW000001
        -D make=Volvo -D model=FH16 -D year=2024 -D status=active -D odometer_km=12345)
      ;;
  esac
}

# ---- server -----------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)
PG_PID=$(head -n 1 "${MTAPI_PG_DATA:-/nonexistent}/postmaster.pid" 2>/dev/null || true)
[[ $PG_PID =~ ^[0-9]+$ ]] && kill -0 "$PG_PID" 2>/dev/null || PG_PID=

# pg_cpu_ticks: CPU time of the whole PostgreSQL cluster so far, as "USER SYSTEM" in clock ticks:
# the postmaster and its live children (bench_cpu_ticks) plus the children that have exited
# (the postmaster's cutime and cstime), so that pgbench's backends count after they are gone.
pg_cpu_ticks() {
  local live stat rest
  local -a f
  live=$(bench_cpu_ticks "$PG_PID")
  stat=$(cat "/proc/$PG_PID/stat" 2>/dev/null) || { echo "$live"; return 0; }
  rest=${stat##*) }
  read -r -a f <<<"$rest"
  awk -v l="$live" -v cu="${f[13]}" -v cs="${f[14]}" 'BEGIN { split(l, a, " "); print a[1] + cu, a[2] + cs }'
}

# start_server THREADS: mtapi on a free port with the dev database; logs in one user per tenant
# and writes the targets file the wrk scripts read.
start_server() {
  local threads=$1 i body token
  MTAPI_PORT=$(bench_free_port) || bench_die "no free port found"
  MTAPI_LISTEN=127.0.0.1:$MTAPI_PORT MTAPI_THREADS=$threads MTAPI_ACCESS_LOG=off MTAPI_LOG_LEVEL=warn \
    MTAPI_DRAIN_TIMEOUT=2s MTAPI_JWT_TTL=2h \
    "$MTAPI" serve >"$TMP/mtapi-$threads.out" 2>"$TMP/mtapi-$threads.err" &
  mtapi_pid=$!
  BASE=http://127.0.0.1:$MTAPI_PORT
  if ! bench_wait_http "$BASE/health" "$mtapi_pid" 15; then
    echo "bench: mtapi did not answer on $BASE/health" >&2
    show_log "$TMP/mtapi-$threads.err"
    show_log "$TMP/mtapi-$threads.out"
    exit 1
  fi
  TARGETS=$TMP/targets-$threads.txt
  : >"$TARGETS"
  for ((i = 1; i <= TENANTS; i++)); do
    body=$(curl -sS --max-time 30 -H 'Content-Type: application/json' \
      -d "{\"tenant\":\"${SLUG[i]}\",\"email\":\"admin@t$i.fleet.bench\",\"password\":\"$PASSWORD\"}" \
      "$BASE/api/v1/auth/login") || bench_die "login to ${SLUG[i]} failed"
    token=$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' <<<"$body")
    [[ -n $token ]] || bench_die "login to ${SLUG[i]} failed: $body"
    TOKEN[i]=$token
    if ((i <= WRK_TENANTS)); then echo "$token $(tr '\n' ' ' <"$TMP/ids-$i")" >>"$TARGETS"; fi
  done
}

# check_responses: every tenant's token reads its own vehicle; the list, a create, and the
# pgbench GET statement run through psql give what the API gives. Prints the response sizes.
check_responses() {
  local i id status size out sql json list_n
  for ((i = 1; i <= TENANTS; i++)); do
    id=$(head -n 1 "$TMP/ids-$i")
    out=$(curl -sS --max-time 5 -o "$TMP/get.body" -w '%{http_code} %{size_header}' \
      -H "Authorization: Bearer ${TOKEN[i]}" "$BASE/api/v1/vehicles/$id")
    read -r status size <<<"$out"
    if [[ $status != 200 ]] || ! grep -Eq "\"id\" ?: ?\"$id\"" "$TMP/get.body"; then
      bench_die "GET /api/v1/vehicles/$id as ${SLUG[i]}: HTTP $status $(head -c 300 "$TMP/get.body")"
    fi
    if ((i == 1)); then
      printf '  %-31s %4d bytes (HTTP %s)\n' "${LABEL[get]}" "$((size + $(wc -c <"$TMP/get.body")))" "$status"
    fi
  done
  # The statement of bench/pgbench/vehicle_get.sql through psql (:name becomes :'name'), as the
  # tenant: it must render exactly the API's body.
  id=$(head -n 1 "$TMP/ids-1")
  curl -sS --max-time 5 -o "$TMP/get.body" -H "Authorization: Bearer ${TOKEN[1]}" "$BASE/api/v1/vehicles/$id"
  sql=$(grep -v '^\\\|^--' "$ROOT/bench/pgbench/vehicle_get.sql" | sed "s/\([^:]\):\([a-z_][a-z0-9_]*\)/\1:'\2'/g")
  json=$(psql_app -v schema="${SCHEMA[1]}, pg_temp" -v role="${ROLE[1]}" -v user_id="${USER_ID[1]}" \
    -v roles='{admin,dispatcher,viewer}' -v vehicle_id="$id" <<<"$sql" | sed -n 3p)
  [[ $json == "$(cat "$TMP/get.body")" ]] ||
    bench_die "bench/pgbench/vehicle_get.sql renders '$json', the API '$(cat "$TMP/get.body")'"
  out=$(curl -sS --max-time 5 -o "$TMP/list.body" -w '%{http_code} %{size_header}' \
    -H "Authorization: Bearer ${TOKEN[1]}" "$BASE/api/v1/vehicles?limit=20")
  read -r status size <<<"$out"
  list_n=$(grep -o '"plate" *:' "$TMP/list.body" | wc -l || true)
  if [[ $status != 200 ]] || ((list_n != (VEHICLES < 20 ? VEHICLES : 20))); then
    bench_die "GET /api/v1/vehicles?limit=20: HTTP $status, $list_n items"
  fi
  printf '  %-31s %4d bytes (HTTP %s, %d items)\n' "${LABEL[list]}" "$((size + $(wc -c <"$TMP/list.body")))" \
    "$status" "$list_n"
  out=$(curl -sS --max-time 5 -o "$TMP/post.body" -w '%{http_code} %{size_header}' \
    -H "Authorization: Bearer ${TOKEN[1]}" -H 'Content-Type: application/json' \
    -d "{\"plate\":\"chk-$RUN_TAG-$2\",\"vin\":\"WVWZZZ1JZXW000001\",\"make\":\"Volvo\",\"model\":\"FH16\",\"year\":2024,\"status\":\"active\",\"odometer_km\":1}" \
    "$BASE/api/v1/vehicles")
  read -r status size <<<"$out"
  [[ $status == 201 ]] || bench_die "POST /api/v1/vehicles: HTTP $status $(head -c 300 "$TMP/post.body")"
  printf '  %-31s %4d bytes (HTTP %s)\n' "${LABEL[post]}" "$((size + $(wc -c <"$TMP/post.body")))" "$status"
}

# ---- measuring ---------------------------------------------------------------

# client_ticks: CPU time of this shell's children that have been waited for (the load generators,
# wrk or pgbench, plus a few milliseconds of helper processes), as "USER SYSTEM" in clock ticks.
client_ticks() {
  local stat rest
  local -a f
  stat=$(cat "/proc/$$/stat")
  rest=${stat##*) }
  read -r -a f <<<"$rest"
  echo "${f[13]} ${f[14]}"
}

# cpu_delta T0 T1 SECONDS N: "cores us_per_item" from two readings of "USER SYSTEM" ticks.
cpu_delta() {
  awk -v t0="$1" -v t1="$2" -v hz="$CLK_TCK" -v secs="$3" -v n="$4" 'BEGIN {
      split(t0, a, " "); split(t1, b, " ")
      c = (b[1] - a[1] + b[2] - a[2]) / hz
      if (n <= 0) n = 1
      printf "%.2f %.1f\n", (secs > 0 ? c / secs : 0), c * 1e6 / n
    }'
}

wrk_tag_counter=0
# run_wrk ENDPOINT SECONDS OUT: one wrk run against mtapi, in the background so that a signal
# interrupts the wait at once. Appends a BENCH_CPU line: mtapi's cores and CPU us per request,
# PostgreSQL's (all its processes) and wrk's CPU us per request.
run_wrk() {
  local ep=$1 secs=$2 out=$3 st=0 m0 m1 c0 c1 d0 d1 n dur tag
  wrk_tag_counter=$((wrk_tag_counter + 1))
  tag=w$wrk_tag_counter
  m0=$(bench_cpu_ticks "$mtapi_pid")
  c0=$(client_ticks)
  [[ -n $PG_PID ]] && d0=$(pg_cpu_ticks)
  "$WRK_BIN" -t"$WRK_THREADS" -c"$CONNS" -d"${secs}s" --latency -s "$ROOT/bench/wrk/fleet_$ep.lua" "$BASE" \
    -- "$TARGETS" "$tag" >"$out" 2>&1 &
  wrk_pid=$!
  wait "$wrk_pid" || st=$?
  wrk_pid=
  m1=$(bench_cpu_ticks "$mtapi_pid")
  c1=$(client_ticks)
  [[ -n $PG_PID ]] && d1=$(pg_cpu_ticks)
  if ((st != 0)) || ! grep -q '^BENCH ' "$out"; then
    echo "bench: wrk ($ep) failed (exit $st):" >&2
    show_log "$out"
    exit 1
  fi
  kill -0 "$mtapi_pid" 2>/dev/null || bench_die "mtapi exited during the run"
  n=$(bench_field requests "$out")
  dur=$(bench_field duration_s "$out")
  read -r cores us <<<"$(cpu_delta "$m0" "$m1" "$dur" "$n")"
  db_us=-
  [[ -n $PG_PID ]] && read -r _ db_us <<<"$(cpu_delta "$d0" "$d1" "$dur" "$n")"
  read -r _ cli_us <<<"$(cpu_delta "$c0" "$c1" "$dur" "$n")"
  echo "BENCH_CPU cores=$cores cpu_us_per_req=$us db_us_per_req=$db_us client_us_per_req=$cli_us" >>"$out"
}

pg_run_counter=0
# run_pgbench ENDPOINT OUT: one pgbench per tenant (PG_CLIENTS split among them), all at once,
# for WARMUP + DURATION + 1 s; the figures come from the per-transaction logs of the DURATION
# seconds after the warm-up. Writes a BENCH_PG line to OUT.
#
# Each pgbench connects with the tenant's search_path and role as session defaults (PGOPTIONS):
# pgbench prepares every statement of a pipeline before running the first one, so `vehicles` and
# mtapi_principal() must resolve before the transaction's own set_config() has run. The
# transaction still sets both, as mtapi's does.
run_pgbench() {
  local ep=$1 out=$2 i clients secs t0 c0 c1 d0 d1 st=0 failed=0 prefix stats n
  pg_run_counter=$((pg_run_counter + 1))
  prefix=$TMP/pglog/run$pg_run_counter
  secs=$((WARMUP_S + DURATION_S + 1))
  [[ -n $PG_PID ]] && d0=$(pg_cpu_ticks)
  c0=$(client_ticks)
  t0=$(date +%s.%N)
  pg_pids=()
  for ((i = 1; i <= TENANTS; i++)); do
    clients=$((PG_CLIENTS / TENANTS + (i <= PG_CLIENTS % TENANTS ? 1 : 0)))
    pgbench_args "$ep" "$i"
    PGOPTIONS="-c search_path=${SCHEMA[i]},pg_temp -c role=${ROLE[i]}" \
      "$PGBENCH_BIN" -n -M prepared -c "$clients" -j 1 -T "$secs" -f "$TMP/pgbench/$ep.sql" "${PGARGS[@]}" \
      -l --log-prefix="$prefix-t$i" "$MTAPI_DATABASE_URL" >"$prefix-t$i.out" 2>&1 &
    pg_pids+=($!)
  done
  for i in "${!pg_pids[@]}"; do
    wait "${pg_pids[i]}" || { st=$?; failed=$((i + 1)); }
  done
  pg_pids=()
  c1=$(client_ticks)
  [[ -n $PG_PID ]] && d1=$(pg_cpu_ticks)
  if ((st != 0)); then
    echo "bench: pgbench ($ep, tenant $failed) failed (exit $st):" >&2
    show_log "$prefix-t$failed.out"
    exit 1
  fi
  # Log lines: client transaction latency_us script epoch_s epoch_us ("failed"/"skipped" in
  # place of the latency for those).
  stats=$(cat "$prefix"-t*.[0-9]* | awk -v lo="$t0" -v w="$WARMUP_S" -v d="$DURATION_S" '
      { total++ }
      $3 !~ /^[0-9]+$/ { bad++; next }
      { t = $5 + $6 / 1e6; if (t >= lo + w && t < lo + w + d) print $3 }
      END { printf "TOTAL %d %d\n", total, bad + 0 }' | sort -n | awk -v d="$DURATION_S" '
      $1 == "TOTAL" { total = $2; bad = $3; next }
      { v[++n] = $1 }
      END {
        p50 = (n ? v[int(n * 0.50 + 0.999999)] : 0); p99 = (n ? v[int(n * 0.99 + 0.999999)] : 0)
        printf "tps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f transactions=%d in_window=%d failed=%d\n",
          n / d, p50 / 1000, p99 / 1000, (n ? v[n] : 0) / 1000, total, n, bad
      }')
  n=$(sed -n 's/.*transactions=\([0-9]*\).*/\1/p' <<<"$stats")
  db_us=-
  [[ -n $PG_PID ]] && read -r _ db_us <<<"$(cpu_delta "$d0" "$d1" 1 "$n")"
  read -r _ cli_us <<<"$(cpu_delta "$c0" "$c1" 1 "$n")"
  echo "BENCH_PG $stats db_us_per_tx=$db_us client_us_per_tx=$cli_us" >"$out"
  rm -f "$prefix"-t*.[0-9]*
}

# ---- run --------------------------------------------------------------------

mtapi_version=$("$MTAPI" --version 2>/dev/null | awk '{ print $2 }')
pg_version=$(psql_app -c 'SHOW server_version' | awk '{ print $1 }')
echo "fleet API: mtapi $mtapi_version vs pgbench $("$PGBENCH_BIN" --version | awk '{ print $3 }') on PostgreSQL $pg_version" \
  "($(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo "  tenants: $TENANTS x $VEHICLES vehicles (${SLUG_PREFIX}1..$TENANTS, set up in $setup_s s); catalog had $tenants_before tenant(s)"
wrk_note=
((WRK_TENANTS == TENANTS)) || wrk_note=", tokens of $WRK_TENANTS tenant(s) only"
echo "  wrk: $WRK_THREADS thread(s), $CONNS connections, keep-alive$wrk_note; mtapi threads: $THREADS_LIST," \
  "pool ${MTAPI_DB_POOL_SIZE:-8} connection(s) per thread, access log off"
echo "  pgbench: $PG_CLIENTS clients over $TENANTS processes (one per tenant), -M prepared, pipeline;" \
  "GET picks among $PG_IDS ids per tenant"
echo "  rounds: $ROUNDS x ${DURATION_S}s per endpoint and side, alternating; warm-up ${WARMUP_S}s" \
  "(mtapi: once per endpoint; pgbench: inside every run)"
[[ -n $PG_PID ]] || echo "  (PostgreSQL's CPU time is not readable here: db_us columns show -)"

median_of() {  # median_of GLOB FIELD
  local f
  for f in $1; do bench_field "$2" "$f"; done | bench_median
}
verdict_lines=()
below=0

for threads in $THREADS_LIST; do
  echo
  echo "== mtapi threads: $threads =="
  start_server "$threads"
  echo "responses:"
  check_responses "$threads" "t$threads"
  if ((WARMUP_S > 0)); then
    for ep in $ENDPOINTS; do run_wrk "$ep" "$WARMUP_S" "$TMP/warmup-$threads-$ep.txt"; done
  fi
  echo "rounds:"
  for ((r = 1; r <= ROUNDS; r++)); do
    for ep in $ENDPOINTS; do
      out=$TMP/mtapi-$threads-$ep-$r.txt
      run_wrk "$ep" "$DURATION_S" "$out"
      errors=$(awk '$1 == "BENCH" { s = 0
          for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] ~ /errors$|^timeouts$/) s += kv[2] }
          print s }' "$out")
      echo "errors=$errors" | sed 's/^/BENCH_ERR /' >>"$out"
      printf '  %d/%d %-4s mtapi    rps=%-8s p50_ms=%-7s p99_ms=%-8s cores=%-4s cpu_us: mtapi=%-6s db=%-6s wrk=%-5s errors=%s\n' \
        "$r" "$ROUNDS" "$ep" "$(bench_field rps "$out")" "$(bench_field p50_ms "$out")" "$(bench_field p99_ms "$out")" \
        "$(bench_field cores "$out")" "$(bench_field cpu_us_per_req "$out")" "$(bench_field db_us_per_req "$out")" \
        "$(bench_field client_us_per_req "$out")" "$errors"
      out=$TMP/pgbench-$threads-$ep-$r.txt
      run_pgbench "$ep" "$out"
      printf '  %d/%d %-4s pgbench  tps=%-8s p50_ms=%-7s p99_ms=%-8s %-4s cpu_us: %-12s db=%-6s pgbench=%-5s failed=%s\n' \
        "$r" "$ROUNDS" "$ep" "$(bench_field tps "$out")" "$(bench_field p50_ms "$out")" "$(bench_field p99_ms "$out")" \
        "" "" "$(bench_field db_us_per_tx "$out")" "$(bench_field client_us_per_tx "$out")" "$(bench_field failed "$out")"
    done
  done
  bench_stop "$mtapi_pid"
  mtapi_pid=

  echo
  echo "summary, mtapi threads=$threads: medians of $ROUNDS rounds; $CONNS wrk connections, $PG_CLIENTS pgbench clients"
  printf '  %-30s %9s %7s %11s %7s %6s %8s %7s %7s %8s %10s %9s %7s\n' endpoint mtapi_rps p99_ms pgbench_tps \
    p99_ms ratio mtapi_us db_us wrk_us db_us pgbench_us cpu_ratio errors
  for ep in $ENDPOINTS; do
    m="$TMP/mtapi-$threads-$ep-*.txt"
    g="$TMP/pgbench-$threads-$ep-*.txt"
    rps=$(median_of "$m" rps)
    p99=$(median_of "$m" p99_ms)
    us=$(median_of "$m" cpu_us_per_req)
    db_req=$(median_of "$m" db_us_per_req)
    wrk_us=$(median_of "$m" client_us_per_req)
    tps=$(median_of "$g" tps)
    pg_p99=$(median_of "$g" p99_ms)
    db_tx=$(median_of "$g" db_us_per_tx)
    pgb_us=$(median_of "$g" client_us_per_tx)
    errs=$(for f in $m; do bench_field errors "$f"; done | awk '{ s += $1 } END { print s + 0 }')
    fails=$(for f in $g; do bench_field failed "$f"; done | awk '{ s += $1 } END { print s + 0 }')
    ratio=$(awk -v a="$rps" -v b="$tps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    # What the ratio would be if the machine did nothing else and both sides were CPU-bound: the
    # CPU a pgbench transaction costs over the CPU an mtapi request costs, load generators included.
    cpu_ratio=$(awk -v m="$us" -v d="$db_req" -v w="$wrk_us" -v t="$db_tx" -v p="$pgb_us" \
      'BEGIN { if (d == "-" || t == "-") print "-"; else printf "%.2f", (t + p) / (m + d + w) }')
    printf '  %-30s %9.0f %7.2f %11.0f %7.2f %6s %8.1f %7s %7s %8s %10s %9s %7s\n' "${LABEL[$ep]}" "$rps" "$p99" \
      "$tps" "$pg_p99" "$ratio" "$us" "$db_req" "$wrk_us" "$db_tx" "$pgb_us" "$cpu_ratio" "$errs/$fails"
    if [[ $ep == get ]]; then
      ok_ratio=$(awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN { print (r >= t ? "ok" : "BELOW TARGET") }')
      ok_p99=$(awk -v p="$p99" -v t="$TARGET_P99_MS" 'BEGIN { print (p <= t ? "ok" : "OVER TARGET") }')
      [[ $ok_ratio == ok && $ok_p99 == ok ]] || below=1
      note=
      ((CONNS == TARGET_CONNS)) || note=" (the target is for $TARGET_CONNS connections)"
      verdict_lines+=("threads=$threads: GET by id ${rps%.*} rps = $ratio x pgbench (target >= $TARGET_RATIO: $ok_ratio), p99 $p99 ms (target <= $TARGET_P99_MS ms: $ok_p99)$note; cpu_ratio $cpu_ratio")
    fi
  done
  echo "  (ratio: mtapi rps / pgbench tps. CPU time (user + system) in us per mtapi request: mtapi_us, db_us (all"
  echo "   PostgreSQL processes), wrk_us; per pgbench transaction: db_us, pgbench_us. cpu_ratio: the pgbench side's"
  echo "   CPU per transaction over the mtapi side's per request, the ratio a CPU-bound machine doing nothing else"
  echo "   would show. errors: wrk socket errors, timeouts and statuses >= 400 / pgbench failed transactions)"
done

echo
for line in "${verdict_lines[@]}"; do echo "$line"; done
echo "load average now $(cut -d' ' -f1-3 /proc/loadavg)"
if ((below)) && [[ ${BENCH_STRICT:-} == 1 ]]; then
  echo "bench: GET by id misses its target (BENCH_STRICT=1)" >&2
  exit 1
fi
