# shellcheck shell=bash
# Shell helpers for the HTTP load benchmarks under bench/ (sourced, not run).

bench_die() {
  echo "bench: $*" >&2
  exit 1
}

# Prints a TCP port on 127.0.0.1 that nothing listens on. A small race remains
# (the port is only reserved once the server binds it); the caller's start-up
# check catches the rare loser.
bench_free_port() {
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if [[ -z "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]]; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

# bench_wait_http URL PID [SECONDS]: waits until URL answers 200 while PID is
# alive. Returns 1 when PID exits or the time runs out.
bench_wait_http() {
  local url=$1 pid=$2 secs=${3:-10} i
  for ((i = 0; i < secs * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# bench_stop PID: SIGTERM, then SIGKILL (to the process and its direct
# children, e.g. nginx workers) if it is still there after 5 s.
bench_stop() {
  local pid=$1 i kids
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -d ' ' || true)
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  for k in $kids; do
    kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null
  done
  wait "$pid" 2>/dev/null || true
}

# Median of the numbers on stdin, one per line (mean of the middle two for an
# even count). Prints nothing for empty input.
bench_median() {
  sort -g | awk '{ v[NR] = $1 }
    END {
      if (NR == 0) exit
      if (NR % 2) printf "%s\n", v[(NR + 1) / 2]
      else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

# bench_field KEY FILE: value of KEY=VALUE on the "BENCH..." summary lines that
# bench/wrk/*.lua scripts print from done().
bench_field() {
  awk -v k="$1" '$1 ~ /^BENCH/ {
      for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == k) { print kv[2]; exit }
      }
    }' "$2"
}

# bench_cpu_ticks PID: CPU time used so far by PID (all its threads) and its
# direct children (e.g. nginx's workers), as "USER SYSTEM" in clock ticks.
bench_cpu_ticks() {
  local pid=$1 p user=0 sys=0 stat rest
  local -a f
  for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${stat##*) }  # the fields after "(comm)"; utime and stime are the 12th and 13th
    read -r -a f <<<"$rest"
    user=$((user + f[11]))
    sys=$((sys + f[12]))
  done
  echo "$user $sys"
}
