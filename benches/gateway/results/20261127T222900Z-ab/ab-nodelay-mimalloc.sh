#!/usr/bin/env bash
# A/B: baseline 4833f95 vs patched (TCP_NODELAY + mimalloc), and patched with 1 tokio worker
set -euo pipefail
BA=/root/.cache/keyward-bench-bin/keyward-4833f95
BB=/root/.cache/keyward-bench-bin/keyward-patched
G=/work/main/benches/gateway
R=$(mktemp -d /tmp/kwexp2.XXXX); cd $R
PIDS=(); trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done' EXIT
UP=sk-ant-exp-2
$BA mock-upstream --listen 127.0.0.1:0 --accept-key $UP > mock.log 2>&1 & PIDS+=($!)
sleep 1; M=$(grep -o 'http://[0-9.:]*' mock.log | head -1)
mk() { # name bin env
  $2 init --data-dir $1 --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --upstream-url $M >/dev/null
  sed -e "s|@LISTEN@|127.0.0.1:0|g" -e "s|@ADMIN_LISTEN@|127.0.0.1:0|g" -e "s|@UPSTREAM_URL@|$M|g" $G/keyward.toml.in > $1/keyward.toml
  cat $G/keyward-controls.toml >> $1/keyward.toml
  env $3 $2 serve --config $1/keyward.toml > $1.log 2>&1 & PIDS+=($!); echo $! > $1.pid
  for i in $(seq 50); do grep -q 'admin plane listening' $1.log && break; sleep 0.1; done
  $2 service add bench --owner t --config $1/keyward.toml >/dev/null
  echo $UP | $2 upstream add dev-main --env dev --config $1/keyward.toml >/dev/null
  $2 key create --service bench --env dev --json --config $1/keyward.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' > $1.key
  grep -o 'data plane listening on http://[0-9.:]*' $1.log | grep -o 'http://[0-9.:]*' > $1.url
}
mk base $BA TOKIO_WORKER_THREADS=2
mk patched $BB TOKIO_WORKER_THREADS=2
mk patched1w $BB TOKIO_WORKER_THREADS=1
BODY='{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"Hello there, gateway!"}]}'
SBODY='{"model":"claude-sonnet-4-6","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"Hello there, gateway!"}]}'
ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' /proc/$1/stat; }
run() { # name url key pid rate secs body
  local t0 t1; t0=$(ticks $4)
  oha -z ${6}s -q $5 -c 32 --latency-correction --no-tui --output-format json -m POST -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' -H "x-api-key: $3" -d "$7" $2 > $1.json 2>/dev/null || true
  t1=$(ticks $4)
  python3 - $1.json $t0 $t1 $1 <<'PY'
import json,sys
j=json.load(open(sys.argv[1])); n=sum(j["statusCodeDistribution"].values()); lp=j["latencyPercentiles"]; fb=j["firstBytePercentiles"]
print(f'{sys.argv[4]:22s} n={n} cpu_ms_per_req={(int(sys.argv[3])-int(sys.argv[2]))*10/n:.4f} total p50={lp["p50"]*1e3:.3f} p99={lp["p99"]*1e3:.3f} first-byte p50={fb["p50"]*1e3:.3f} p99={fb["p99"]*1e3:.3f}', flush=True)
PY
}
U() { echo "$(cat $1.url)/v1/messages"; }
run direct-stream $M/v1/messages $UP $(cat mock.pid 2>/dev/null || echo ${PIDS[0]}) 100 8 "$SBODY"
for k in base patched patched1w; do run $k-stream $(U $k) $(cat $k.key) $(cat $k.pid) 100 8 "$SBODY"; done
for round in 1 2; do
  for k in base patched patched1w; do
    run $k-1000-r$round $(U $k) $(cat $k.key) $(cat $k.pid) 1000 12 "$BODY"
  done
done
for round in 1 2; do
  for k in base patched patched1w; do
    BENCH_AUTH_HEADER=x-api-key BENCH_AUTH_VALUE=$(cat $k.key) wrk -t2 -c64 -d8s -s $G/post.lua $(U $k) | grep -E 'Requests/sec' | sed "s/^/$k-r$round /"
  done
done
