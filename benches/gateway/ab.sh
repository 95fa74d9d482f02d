#!/usr/bin/env bash
# A/B saturation of two keyward builds: both serve the benchmark's config (every
# control on) in front of one mock upstream, and wrk (-t2 -c64) measures them in
# alternation, so drift on the shared machine falls on both alike.
#
#   benches/gateway/ab.sh A_BIN B_BIN [ROUNDS (4)] [SECONDS (6)]
#
# AB_BODY=FILE posts that file as the body (default: post.lua's small request);
# AB_KEY_ARGS adds `key create` options (e.g. "--shield off").
# AB_UNIQUE=1 makes every request's body different (post.lua's BENCH_UNIQUE; the body
# needs its marker). AB_ENV_A / AB_ENV_B: environment assignments for that side's
# server only ("NAME=VALUE ..."), so A and B may be one build run two ways.
# AB_RATE=N measures CPU instead: each round runs oha at N requests/s for SECONDS
# and reads the server's CPU time (user+system, /proc) around it.
# Prints one line per round and build: "round N A|B requests/s" (or "... µs-of-CPU/request"),
# then each server's peak RSS.
# Needs wrk, and oha for AB_RATE (run.sh installs both).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
A=$1; B=$2; ROUNDS=${3:-4}; D=${4:-6}
RUN="$(mktemp -d "${TMPDIR:-/tmp}/keyward-ab.XXXXXX")"
# shellcheck source=benches/gateway/lib.sh
source "$HERE/lib.sh"
trap cleanup EXIT
KEYWARD_BIN=$A
start_mock
declare -A URL KEY PID
start() {  # A|B BIN ENV: that build installed and serving, with a provisioned key
  local d=$RUN/$1
  KEYWARD_BIN=$2
  install_keyward "$d"
  # shellcheck disable=SC2086
  env ${3:-} "$2" serve --config "$d/keyward.toml" >"$d/log" 2>&1 &
  PID[$1]=$!; PIDS+=("$!")
  URL[$1]=$(wait_for_line "$d/log" 'data plane listening on http://' 30 | grep -o 'http://[0-9.:]*')
  # shellcheck disable=SC2086
  KEY[$1]=$(provision "$d" ${AB_KEY_ARGS:-})
}
start A "$A" "${AB_ENV_A:-}"
start B "$B" "${AB_ENV_B:-}"
ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
body=(-d "$BODY")
[ -n "${AB_BODY:-}" ] && body=(-D "$AB_BODY")
export BENCH_BODY_FILE=${AB_BODY:-} BENCH_AUTH_HEADER=x-api-key BENCH_UNIQUE=${AB_UNIQUE:-0}
for r in $(seq "$ROUNDS"); do
  for x in A B; do
    u=${URL[$x]}/v1/messages
    export BENCH_AUTH_VALUE=${KEY[$x]}
    if [ -n "${AB_RATE:-}" ]; then
      t0=$(ticks "${PID[$x]}")
      n=$(oha -z "${D}s" -q "$AB_RATE" -c 32 --latency-correction --no-tui --output-format json -m POST \
        -H "content-type: application/json" -H "anthropic-version: 2023-06-01" -H "x-api-key: ${KEY[$x]}" "${body[@]}" \
        "$u" | python3 -c 'import json,sys; print(sum(json.load(sys.stdin)["statusCodeDistribution"].values()))')
      t1=$(ticks "${PID[$x]}")
      echo "round $r $x $(python3 -c "print(round(($t1-$t0)*1e6/$(getconf CLK_TCK)/$n, 1))") us/request ($n requests)"
    else
      wrk -t2 -c64 -d1s -s "$HERE/post.lua" "$u" >/dev/null 2>&1
      rps=$(wrk -t2 -c64 -d"${D}s" -s "$HERE/post.lua" "$u" 2>&1 | awk '/Requests\/sec/ {print $2}')
      echo "round $r $x $rps"
    fi
  done
done
for x in A B; do echo "$x peak RSS $(awk '/^VmHWM:/ {print $2, $3}' "/proc/${PID[$x]}/status")"; done
