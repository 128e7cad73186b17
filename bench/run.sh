#!/usr/bin/env bash
# The load benchmarks one after the other (what `make bench` runs after `make build`):
#
#   health   bench/health.sh    GET /health, mtapi vs nginx               (~1 min)
#   fleet    bench/fleet.sh     fleet API over 8 tenants vs pgbench       (~4 min per server size)
#   ratelimit bench/ratelimit.sh limiter off vs Redis vs in process        (~2 min)
#   tenancy  bench/tenancy.sh   provisioning latency, migrating 1,000 tenants (~1-2 min)
#
#   bench/run.sh                      all four, in this order
#   bench/run.sh fleet                only the fleet API benchmark
#   bench/run.sh health fleet         a selection, in the order given
#
# Each benchmark keeps its own knobs (BENCH_* variables, see bench/README.md), which apply to all
# of them alike: BENCH_DURATION=5s bench/run.sh shortens both HTTP benchmarks. The fleet
# benchmark runs before the tenancy one because the latter creates and drops 1,000 schemas, and
# the catalog bloat it leaves until autovacuum catches up would slow the former. A failing
# benchmark does not stop the next ones; the exit status is 1 when any failed. The micro
# benchmarks (build/release/bench/mtapi_micro_bench) are not part of this run.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

declare -A SCRIPT=([health]=health.sh [fleet]=fleet.sh [ratelimit]=ratelimit.sh [tenancy]=tenancy.sh)
names=("$@")
((${#names[@]} > 0)) || names=(health fleet ratelimit tenancy)
for name in "${names[@]}"; do
  if [[ -z ${SCRIPT[$name]:-} ]]; then
    echo "usage: bench/run.sh [health] [fleet] [ratelimit] [tenancy]   (default: all four)" >&2
    exit 2
  fi
done

# A Ctrl-C stops the benchmark that runs (it cleans up after itself) and the whole sequence.
trap 'exit 130' INT
trap 'exit 143' TERM

failed=()
results=()
for name in "${names[@]}"; do
  echo "==== bench/${SCRIPT[$name]} ($(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg))"
  start=$SECONDS
  "$ROOT/bench/${SCRIPT[$name]}"
  st=$?
  ((st == 130 || st == 143)) && exit "$st"
  if ((st == 0)); then
    results+=("$(printf '  %-8s ok      %4d s' "$name" $((SECONDS - start)))")
  else
    failed+=("$name")
    results+=("$(printf '  %-8s FAILED  %4d s  (exit %d)' "$name" $((SECONDS - start)) "$st")")
  fi
  echo
done

echo "==== summary"
printf '%s\n' "${results[@]}"
((${#failed[@]} == 0)) || exit 1
