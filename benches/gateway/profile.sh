#!/usr/bin/env bash
# Profile keyward's request path at a fixed rate (issue 9), against nginx on the
# same mock upstream:
#   1. perf, cpu-clock sampling with DWARF call graphs (hardware counters are not
#      available on this VM: `perf stat -e instructions` says <not supported>),
#      keyward at a fixed rate;
#   2. callgrind instruction counts per request for keyward and for nginx
#      (single process), instrumentation switched on only for the measured
#      requests, so start-up is not counted.
#
#   benches/gateway/profile.sh [RATE] [REQUESTS]      (defaults: 1000/s for perf; 2000 requests at 100/s under callgrind)
#
# Needs what run.sh installs (oha, nginx) plus linux-perf and valgrind.
# Env: KEYWARD_BIN (default: ~/.cache/keyward-target-bench/release/keyward);
# SKIP_PERF=1 and SKIP_NGINX=1 leave out the perf part and nginx's callgrind run
# (an A/B of two keyward builds needs only keyward's instruction count).
# Output: benches/gateway/results/<stamp>-profile/.

set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RATE=${1:-1000}
NREQ=${2:-2000}
KEYWARD_BIN=${KEYWARD_BIN:-$HOME/.cache/keyward-target-bench/release/keyward}
for tool in oha nginx perf valgrind callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install linux-perf valgrind; run.sh installs the rest)" >&2; exit 2; }
done

OUT="$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)-profile"
mkdir -p "$OUT"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/keyward-profile.XXXXXX")"
# shellcheck source=benches/gateway/lib.sh
source "$HERE/lib.sh"
trap cleanup EXIT
log() { echo "[profile] $*" >&2; }
start_mock
load() {  # URL KEY RATE (-z SECONDS | -n COUNT) OUTFILE
  oha "$4" "$5" -q "$3" -c 16 --latency-correction --no-tui --output-format json -m POST \
    -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' -H "x-api-key: $2" -d "$BODY" "$1" >"$6" 2>&1 || true
}

# ---------------------------------------------------------------- 1. perf
if [ "${SKIP_PERF:-0}" != 1 ]; then
install_keyward "$RUN/kw"
"$KEYWARD_BIN" serve --config "$RUN/kw/keyward.toml" >"$RUN/kw.log" 2>&1 &
KW_PID=$!; PIDS+=("$KW_PID")
KW_URL=$(wait_for_line "$RUN/kw.log" 'data plane listening on http://' 30 | grep -o 'http://[0-9.:]*')
VKEY=$(provision "$RUN/kw")
load "$KW_URL/v1/messages" "$VKEY" 500 -z 2s "$RUN/warm.json"
log "perf: keyward at $RATE/s for 10 s"
load "$KW_URL/v1/messages" "$VKEY" "$RATE" -z 12s "$OUT/oha-perf.json" &
LOAD=$!
sleep 1
perf record -F 1999 --call-graph dwarf,16384 -p "$KW_PID" -o "$RUN/perf.data" -- sleep 10 >/dev/null 2>&1
wait "$LOAD" || true
perf report -i "$RUN/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' >"$OUT/perf-by-dso.txt" || true
perf report -i "$RUN/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -80 >"$OUT/perf-self.txt" || true
perf report -i "$RUN/perf.data" --children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' |
  grep -E 'keyward|hyper|axum|rusqlite|serde|sha2|hmac|tracing|malloc|free|tokio::runtime::(time|io)|\[k\] (tcp|sock|__x64_sys|do_syscall)' | cut -c1-220 | head -120 >"$OUT/perf-children.txt" || true
# where the biggest self costs are called from (syscall -> tokio/hyper frames)
perf report -i "$RUN/perf.data" --no-children --sort sym --stdio -G --percent-limit 4 2>/dev/null |
  grep -v '^$' | cut -c1-200 | head -400 >"$OUT/perf-callers-top.txt" || true
# share of samples whose stack passes through each phase of the request path
perf script -i "$RUN/perf.data" 2>/dev/null | python3 "$HERE/stackshare.py" >"$OUT/perf-phases.txt" || true
kill -TERM "$KW_PID" 2>/dev/null || true
fi

# ---------------------------------------------------------------- 2. callgrind
cg_run() {  # NAME PID URL KEY
  local name=$1 pid=$2 url=$3 key=$4
  load "$url" "$key" 100 -z 2s "$RUN/warm-$name.json"        # pools, caches, lazy statics
  callgrind_control -i on "$pid" >/dev/null
  load "$url" "$key" 100 -n "$NREQ" "$OUT/oha-callgrind-$name.json"
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
}

log "callgrind: keyward, $NREQ requests at 100/s"
install_keyward "$RUN/kw2"
valgrind --tool=callgrind --instr-atstart=no --dump-instr=no \
  --callgrind-out-file="$OUT/callgrind.out.keyward" "$KEYWARD_BIN" serve --config "$RUN/kw2/keyward.toml" >"$RUN/kw2.log" 2>&1 &
KW2_PID=$!; PIDS+=("$KW2_PID")
KW2_URL=$(wait_for_line "$RUN/kw2.log" 'data plane listening on http://' 120 | grep -o 'http://[0-9.:]*')
VKEY2=$(provision "$RUN/kw2")
cg_run keyward "$KW2_PID" "$KW2_URL/v1/messages" "$VKEY2"
kill -TERM "$KW2_PID" 2>/dev/null || true

if [ "${SKIP_NGINX:-0}" != 1 ]; then
log "callgrind: nginx (one process), $NREQ requests at 100/s"
NGINX_PORT=$(free_port)
nginx_conf "$RUN/nginx" "$NGINX_PORT" "${MOCK_URL#http://}" \
  -e 's|^master_process on;|master_process off;|' -e 's|^worker_processes auto;|worker_processes 1;|'
valgrind --tool=callgrind --instr-atstart=no --dump-instr=no \
  --callgrind-out-file="$OUT/callgrind.out.nginx" nginx -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/error.log" >"$RUN/nginx.log" 2>&1 &
NG_PID=$!; PIDS+=("$NG_PID")
for ((i = 0; i < 300; i++)); do curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && break; sleep 0.2; done
cg_run nginx "$NG_PID" "http://127.0.0.1:$NGINX_PORT/v1/messages" "$UPKEY"
kill -TERM "$NG_PID" 2>/dev/null || true
fi
sleep 2

for name in keyward nginx; do
  f=$(ls -S "$OUT"/callgrind.out.$name* 2>/dev/null | head -1 || true)
  [ -n "$f" ] || continue
  total=$(callgrind_annotate "$f" 2>/dev/null | grep 'PROGRAM TOTALS' | grep -o '^[0-9,]*' | tr -d , | head -1)
  n=$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["statusCodeDistribution"].values()))' "$OUT/oha-callgrind-$name.json" 2>/dev/null || echo 0)
  echo "$name: instructions=$total requests=$n per_request=$(( ${total:-0} / (n > 0 ? n : 1) ))" | tee -a "$OUT/callgrind-summary.txt" >&2
  callgrind_annotate --inclusive=yes "$f" 2>/dev/null | head -120 | cut -c1-220 >"$OUT/callgrind-$name-inclusive.txt" || true
  callgrind_annotate "$f" 2>/dev/null | head -80 | cut -c1-220 >"$OUT/callgrind-$name-self.txt" || true
done
gzip -f "$OUT"/callgrind.out.* 2>/dev/null || true
log "done: $OUT"
