#!/usr/bin/env bash
# System calls per request (issue 9): keyward and nginx in front of the same mock
# upstream, the same fixed-rate load, `strace -c -f` attached to every thread of
# the proxy for the measured requests only. CPU per request on this machine is
# mostly kernel time (the loopback TCP stack runs in the caller's context), so
# the number and kind of calls a request makes matter as much as user-space
# instructions.
#
#   benches/gateway/syscalls.sh [RATE] [SECONDS]      (defaults: 500/s for 10 s)
#
# strace slows every call down, so the rate is kept low; the counts, not the
# times, are the result. Needs strace, oha and nginx (run.sh installs the last two).
# Env: KEYWARD_BIN (default: ~/.cache/keyward-target-bench/release/keyward);
# SKIP_NGINX=1 measures keyward only (for comparing two builds).
# Output: benches/gateway/results/<stamp>-syscalls/ (strace summaries, oha output,
# summary.txt with calls per request).

set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RATE=${1:-500}
SECS=${2:-10}
KEYWARD_BIN=${KEYWARD_BIN:-$HOME/.cache/keyward-target-bench/release/keyward}
for tool in oha nginx strace; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install strace; run.sh installs the rest)" >&2; exit 2; }
done

OUT="$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)-syscalls"
mkdir -p "$OUT"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/keyward-syscalls.XXXXXX")"
# shellcheck source=benches/gateway/lib.sh
source "$HERE/lib.sh"
trap cleanup EXIT
log() { echo "[syscalls] $*" >&2; }
start_mock
load() {  # URL KEY RATE SECONDS OUTFILE
  oha -z "$4" -q "$3" -c 32 --latency-correction --no-tui --output-format json -m POST \
    -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' -H "x-api-key: $2" -d "$BODY" "$1" >"$5" 2>&1 || true
}
answered() { python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["statusCodeDistribution"].values()))' "$1"; }

# measure NAME URL KEY PID...: strace every thread of the PIDs during one fixed-rate run
measure() {
  local name=$1 url=$2 key=$3; shift 3
  load "$url" "$key" 200 2s "$RUN/warm-$name.json"   # pools, caches, lazy statics
  local args=() p
  for p in "$@"; do args+=(-p "$p"); done
  strace -c -f -o "$OUT/strace-$name.txt" "${args[@]}" &
  local st=$!
  sleep 1
  load "$url" "$key" "$RATE" "${SECS}s" "$OUT/oha-$name.json"
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  local n; n=$(answered "$OUT/oha-$name.json")
  python3 - "$name" "$n" "$OUT/strace-$name.txt" <<'PY' | tee -a "$OUT/summary.txt"
import sys
name, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = []
for line in open(path):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls = int(f[3])
        errors = int(f[4]) if len(f) == 6 else 0
        rows.append((f[-1], calls, errors))
total = sum(c for _, c, _ in rows)
print(f"{name}: {n} requests, {total} system calls, {total / max(n, 1):.2f} per request")
for sc, c, e in sorted(rows, key=lambda r: -r[1]):
    if c / max(n, 1) >= 0.01:
        print(f"  {sc:<16} {c / max(n, 1):6.2f} per request" + (f"  ({e / max(n, 1):.2f} failed)" if e else ""))
PY
}

# ---------------------------------------------------------------- keyward
install_keyward "$RUN/kw"
"$KEYWARD_BIN" serve --config "$RUN/kw/keyward.toml" >"$RUN/kw.log" 2>&1 &
KW_PID=$!; PIDS+=("$KW_PID")
KW_URL=$(wait_for_line "$RUN/kw.log" 'data plane listening on http://' 30 | grep -o 'http://[0-9.:]*')
VKEY=$(provision "$RUN/kw")
log "keyward at $RATE/s for ${SECS}s"
measure keyward "$KW_URL/v1/messages" "$VKEY" "$KW_PID"
kill -TERM "$KW_PID" 2>/dev/null || true

# ---------------------------------------------------------------- nginx
if [ "${SKIP_NGINX:-0}" != 1 ]; then
  NGINX_PORT=$(free_port)
  nginx_conf "$RUN/nginx" "$NGINX_PORT" "${MOCK_URL#http://}"
  nginx -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/error.log" >"$RUN/nginx.log" 2>&1 &
  NG_PID=$!; PIDS+=("$NG_PID")
  for ((i = 0; i < 300; i++)); do curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && break; sleep 0.2; done
  log "nginx at $RATE/s for ${SECS}s"
  # shellcheck disable=SC2046
  measure nginx "http://127.0.0.1:$NGINX_PORT/v1/messages" "$UPKEY" "$NG_PID" $(pgrep -P "$NG_PID")
fi
log "done: $OUT"
