#!/usr/bin/env bash
# experiment: keyward CPU/request at 1000/s with 2 tokio workers (default) vs 1, next to nginx
set -euo pipefail
B=/root/.cache/keyward-target-bench/release/keyward
G=/work/main/benches/gateway
R=$(mktemp -d /tmp/kwexp.XXXX); cd $R
PIDS=(); trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done' EXIT
UP=sk-ant-exp-1
$B mock-upstream --listen 127.0.0.1:0 --accept-key $UP > mock.log 2>&1 & PIDS+=($!)
sleep 1; M=$(grep -o 'http://[0-9.:]*' mock.log | head -1)
mk() { # dir env
  $B init --data-dir $1 --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --upstream-url $M >/dev/null
  sed -e "s|@LISTEN@|127.0.0.1:0|g" -e "s|@ADMIN_LISTEN@|127.0.0.1:0|g" -e "s|@UPSTREAM_URL@|$M|g" $G/keyward.toml.in > $1/keyward.toml
  cat $G/keyward-controls.toml >> $1/keyward.toml
  env $2 $B serve --config $1/keyward.toml > $1.log 2>&1 & PIDS+=($!); echo $! > $1.pid
  for i in $(seq 50); do grep -q 'admin plane listening' $1.log && break; sleep 0.1; done
  $B service add bench --owner t --config $1/keyward.toml >/dev/null
  echo $UP | $B upstream add dev-main --env dev --config $1/keyward.toml >/dev/null
  $B key create --service bench --env dev --json --config $1/keyward.toml | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' > $1.key
  grep -o 'data plane listening on http://[0-9.:]*' $1.log | grep -o 'http://[0-9.:]*' > $1.url
}
mk kw2 TOKIO_WORKER_THREADS=2
mk kw1 TOKIO_WORKER_THREADS=1
BODY='{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"Hello there, gateway!"}]}'
ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' /proc/$1/stat; }
run() { # name url key pid rate secs
  local t0 t1; t0=$(ticks $4)
  oha -z ${6}s -q $5 -c 32 --latency-correction --no-tui --output-format json -m POST -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' -H "x-api-key: $3" -d "$BODY" $2 > $1.json 2>/dev/null || true
  t1=$(ticks $4)
  python3 - $1.json $t0 $t1 $1 <<'PY'
import json,sys
j=json.load(open(sys.argv[1])); n=sum(j["statusCodeDistribution"].values()); lp=j["latencyPercentiles"]
print(f'{sys.argv[4]:10s} n={n} cpu_ms_per_req={(int(sys.argv[3])-int(sys.argv[2]))*10/n:.4f} p50={lp["p50"]*1e3:.3f} p99={lp["p99"]*1e3:.3f}')
PY
}
for round in 1 2; do
  for k in kw2 kw1; do
    oha -z 1s -q 500 -c 8 --no-tui -m POST -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' -H "x-api-key: $(cat $k.key)" -d "$BODY" $(cat $k.url)/v1/messages >/dev/null 2>&1 || true
    run $k-r$round $(cat $k.url)/v1/messages $(cat $k.key) $(cat $k.pid) ${RATE:-1000} ${SECS:-15}
  done
done
for k in kw2 kw1; do
  BENCH_AUTH_HEADER=x-api-key BENCH_AUTH_VALUE=$(cat $k.key) wrk -t2 -c64 -d8s -s $G/post.lua $(cat $k.url)/v1/messages | grep -E 'Requests/sec' | sed "s/^/$k /"
done
