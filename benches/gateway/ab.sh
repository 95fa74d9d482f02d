#!/usr/bin/env bash
# A/B saturation of two keyward builds: both serve the benchmark's config (every
# control on) in front of one mock upstream, and wrk (-t2 -c64) measures them in
# alternation, so drift on the shared machine falls on both alike.
#
#   benches/gateway/ab.sh A_BIN B_BIN [ROUNDS (4)] [SECONDS (6)]
#
# AB_BODY=FILE posts that file as the body (default: post.lua's small request);
# AB_KEY_ARGS adds `key create` options (e.g. "--shield off").
# AB_RATE=N measures CPU instead: each round runs oha at N requests/s for SECONDS
# and reads the server's CPU time (user+system, /proc) around it.
# Prints one line per round and build: "round N A|B requests/s" (or "... µs-of-CPU/request").
# Needs wrk, and oha for AB_RATE (run.sh installs both).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
A=$1; B=$2; ROUNDS=${3:-4}; D=${4:-6}
RUN=$(mktemp -d)
# the servers start in a process substitution, not as jobs of this shell: their
# pids go to a file, so that they are stopped too
trap 'kill $(jobs -p) $(cat $RUN/pids 2>/dev/null) 2>/dev/null; sleep 0.5; rm -rf $RUN' EXIT
UPKEY="sk-ant-ab-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
$A mock-upstream --listen 127.0.0.1:0 --accept-key "$UPKEY" >$RUN/mock.log 2>&1 &
sleep 1; MOCK=$(grep -o 'http://[0-9.:]*' $RUN/mock.log | head -1)
start() { # NAME BIN
  local d=$RUN/$1
  $2 init --data-dir $d --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --upstream-url $MOCK >/dev/null
  sed -e "s|@LISTEN@|127.0.0.1:0|g" -e "s|@ADMIN_LISTEN@|127.0.0.1:0|g" -e "s|@UPSTREAM_URL@|$MOCK|g" $HERE/keyward.toml.in >$d/keyward.toml
  cat $HERE/keyward-controls.toml >>$d/keyward.toml
  $2 serve --config $d/keyward.toml >$d/log 2>&1 &
  echo $! >>$RUN/pids
  for i in $(seq 50); do grep -q 'data plane listening' $d/log 2>/dev/null && break; sleep 0.1; done
  $2 service add bench --owner t --config $d/keyward.toml >/dev/null
  echo "$UPKEY" | $2 upstream add dev-main --env dev --config $d/keyward.toml >/dev/null
  # shellcheck disable=SC2086
  local key=$($2 key create --service bench --env dev ${AB_KEY_ARGS:-} --json --config $d/keyward.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
  echo "$(grep -o 'data plane listening on http://[0-9.:]*' $d/log | grep -o 'http://.*') $key"
}
read UA KA < <(start a $A)
read UB KB < <(start b $B)
for r in $(seq $ROUNDS); do
  for x in A B; do
    if [ $x = A ]; then u=$UA; k=$KA; else u=$UB; k=$KB; fi
    export BENCH_BODY_FILE=${AB_BODY:-}
    if [ -n "${AB_RATE:-}" ]; then
      p=$(sed -n "$([ $x = A ] && echo 1 || echo 2)p" $RUN/pids)
      body=(-d "$(sed -n "s/^  wrk.body = '\(.*\)'$/\1/p" $HERE/post.lua)")
      [ -n "${AB_BODY:-}" ] && body=(-D "$AB_BODY")
      ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' /proc/$p/stat; }
      t0=$(ticks)
      n=$(oha -z ${D}s -q $AB_RATE -c 32 --latency-correction --no-tui --output-format json -m POST \
        -H "content-type: application/json" -H "anthropic-version: 2023-06-01" -H "x-api-key: $k" "${body[@]}" \
        $u/v1/messages | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(d["statusCodeDistribution"].values()))')
      t1=$(ticks)
      echo "round $r $x $(python3 -c "print(round(($t1-$t0)*1e6/$(getconf CLK_TCK)/$n, 1))") us/request ($n requests)"
      continue
    fi
    BENCH_AUTH_HEADER=x-api-key BENCH_AUTH_VALUE=$k wrk -t2 -c64 -d1s -s $HERE/post.lua $u/v1/messages >/dev/null 2>&1
    rps=$(BENCH_AUTH_HEADER=x-api-key BENCH_AUTH_VALUE=$k wrk -t2 -c64 -d${D}s -s $HERE/post.lua $u/v1/messages 2>&1 | awk '/Requests\/sec/ {print $2}')
    echo "round $r $x $rps"
  done
done
