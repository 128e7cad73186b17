#!/usr/bin/env bash
# Tenancy benchmarks against the local dev PostgreSQL: provisioning latency (p50 over 50
# tenants) and the time to bring 1,000 tenants through one added tenant migration, printed
# next to the targets. Starts the dev services, migrates (as `make run` does), runs
# build/release/bench/mtapi_tenancy_bench, which removes every tenant it creates, and stops the
# services again if they were not running before. See bench/README.md ("Tenancy benchmarks").
#
#   bench/tenancy.sh                     (or: make bench-tenancy)
#   bench/tenancy.sh --tenants 200 --concurrency 2
#   MTAPI_MIGRATE_CONCURRENCY=8 BENCH_PROVISION_TENANTS=100 bench/tenancy.sh
#
# Arguments are passed to the benchmark program (--help lists them). BENCH_STRICT=1 makes a
# figure over its target fail the script; BENCH_KEEP_SERVICES=1 leaves the services running.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

MTAPI_BIN=${MTAPI_BIN:-$ROOT/build/release/mtapi}
TENANCY_BENCH_BIN=${TENANCY_BENCH_BIN:-$ROOT/build/release/bench/mtapi_tenancy_bench}
TARGET_PROVISION_P50_MS=100
TARGET_MIGRATE_S=30
TARGET_PROVISION_N=50
TARGET_MIGRATE_N=1000

[[ -x $MTAPI_BIN ]] || bench_die "$MTAPI_BIN not found: build it first (make build)"
[[ -x $TENANCY_BENCH_BIN ]] || bench_die "$TENANCY_BENCH_BIN not found: build it first (make build)"
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  exec "$TENANCY_BENCH_BIN" --help
fi

cd "$ROOT"
services_were_running=0
if scripts/services status >/dev/null 2>&1; then services_were_running=1; fi

OUT=$(mktemp "${TMPDIR:-/tmp}/mtapi-bench-tenancy.XXXXXX")
cleanup() {
  local status=$?
  set +e
  trap - EXIT INT TERM HUP
  rm -f "$OUT"
  if [[ $services_were_running == 0 && ${BENCH_KEEP_SERVICES:-} != 1 ]]; then
    scripts/services down >/dev/null 2>&1 || echo "bench: scripts/services down failed" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

scripts/services up
set -a
# shellcheck source=/dev/null
. .var/dev.env
set +a
"$MTAPI_BIN" migrate

echo
# The program handles Ctrl-C itself (it stops and removes its tenants): meanwhile the script only
# waits for it, and tee ignores the signal so the cleanup output still has a reader.
trap ':' INT TERM HUP
st=0
"$TENANCY_BENCH_BIN" "$@" | (
  trap '' INT TERM HUP
  exec tee "$OUT"
) || st=$?
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
if ((st == 130)); then
  echo "bench: interrupted" >&2
  exit "$st"
elif ((st != 0)); then
  echo "bench: mtapi_tenancy_bench failed (exit $st)" >&2
  exit "$st"
fi

# ---- summary ----------------------------------------------------------------

field() { bench_field "$1" "$OUT"; }
over=0
# verdict VALUE TARGET: "ok" or "OVER TARGET" (and remembers the latter).
verdict() {
  if awk -v v="$1" -v t="$2" 'BEGIN { exit !(v <= t) }'; then
    echo ok
  else
    over=1
    echo "OVER TARGET"
  fi
}

echo
echo "tenancy benchmark summary ($(nproc) CPUs, load average now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '  %-46s %-10s %-28s %s\n' figure target measured verdict
if [[ -n $(field provision_n) ]]; then
  n=$(field provision_n)
  p50=$(field provision_p50_ms)
  note=
  ((n == TARGET_PROVISION_N)) || note=" (target is for $TARGET_PROVISION_N)"
  printf '  %-46s %-10s %-28s %s\n' "provisioning latency p50, $n tenants$note" "<= ${TARGET_PROVISION_P50_MS} ms" \
    "$p50 ms" "$(verdict "$p50" "$TARGET_PROVISION_P50_MS")"
  printf '  %-46s %-10s %-28s\n' "  p90 / max" "" "$(field provision_p90_ms) / $(field provision_max_ms) ms"
  printf '  %-46s %-10s %-28s\n' "  argon2id hash alone (t=2, m=19 MiB)" "" "$(field hash_ms) ms"
fi
if [[ -n $(field step_tenant_stream_ms) ]]; then
  printf '  %-46s %-10s %-28s\n' "  tenant stream (DDL) in the replay" "" "$(field step_tenant_stream_ms) ms"
fi
if [[ -n $(field migrate_n) ]]; then
  n=$(field migrate_n)
  secs=$(field migrate_s)
  note=
  ((n == TARGET_MIGRATE_N)) || note=" (target is for $TARGET_MIGRATE_N)"
  printf '  %-46s %-10s %-28s %s\n' "migrate $n tenants, 1 added migration$note" "<= ${TARGET_MIGRATE_S} s" \
    "$secs s ($(field migrate_tenants_per_s) tenants/s)" "$(verdict "$secs" "$TARGET_MIGRATE_S")"
  printf '  %-46s %-10s %-28s\n' "  run_all concurrency" "" "$(field migrate_concurrency)"
  printf '  %-46s %-10s %-28s\n' "  setup (not measured) / second no-op run" "" \
    "$(field setup_s) s / $(field noop_ms) ms"
fi
printf '  %-46s %-10s %-28s\n' "cleanup: tenants left behind" "0" "$(field left_behind) (in $(field cleanup_s) s)"

if ((over)) && [[ ${BENCH_STRICT:-} == 1 ]]; then
  echo "bench: a figure is over its target (BENCH_STRICT=1)" >&2
  exit 1
fi
