#!/usr/bin/env bash
# Gateway benchmark (issue 9): the same load generators and the same upstream
# (`keyward mock-upstream`, zero added latency), in one run, on loopback:
#   direct   the upstream itself
#   nginx    a plain reverse proxy (HTTP/1.1, upstream keep-alive)
#   keyward  every control that exists (keyward.toml.in [+ keyward-controls.toml])
#   litellm  LiteLLM proxy 1.110.2, master-key mode, Anthropic /v1/messages
# then keyward with 10,000 keys, 1 MiB request bodies, and a key flood.
#
#   benches/gateway/run.sh [--quick] [--head] [--readme] [--no-litellm]
#
# --quick       short phases (under 3 minutes); the default is the full run (under 15)
# --head        build the committed HEAD (a `git archive` snapshot under ~/.cache),
#               not the work tree, so edits in progress cannot break or skew the run
# --readme      write the summary into benches/README.md (## Gateway section)
# --no-litellm  skip LiteLLM (its install and start take the longest)
# Env: KEYWARD_BIN (use this binary instead of building), CARGO_TARGET_DIR
# (default ~/.cache/keyward-target-bench), BENCH_VENV (default
# ~/.cache/keyward-litellm-venv).
#
# Every load phase is bounded in time (-d / -z), every wait in tries; all
# traffic goes to 127.0.0.1. Raw output: benches/gateway/results/<stamp>/.

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MODE=full
README=0
LITELLM=1
HEAD_ONLY=0
for a in "$@"; do
  case "$a" in
    --quick) MODE=quick ;;
    --head) HEAD_ONLY=1 ;;
    --readme) README=1 ;;
    --no-litellm) LITELLM=0 ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

# ---------------------------------------------------------------- versions
WRK_VERSION=4.1.0-3+b2
NGINX_VERSION=1.22.1-9+deb12u11
OHA_VERSION=1.16.0
LITELLM_VERSION=1.110.2   # never 1.107.0 (a compromised release)

# ---------------------------------------------------------------- durations
if [ "$MODE" = quick ]; then
  WRK_D=3; SAT_ROUNDS=1; OHA_D=3; WARM_D=1; TTFB_D=2; BIG_D=2; NKEYS=10000
else
  WRK_D=8; SAT_ROUNDS=3; OHA_D=20; WARM_D=1; TTFB_D=10; BIG_D=10; NKEYS=10000
fi
RATES="100 1000 2000"
LITELLM_RATES="20 50 100"   # 50 and 100 per the issue; 20 is below its saturation on this machine
CPU_RATE=1000          # the fixed-rate run whose /proc CPU time is divided by its requests
FLOOD_RATE=10000
OHA_C=32

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$HERE/results/$STAMP-$MODE"
mkdir -p "$OUT"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/keyward-bench.XXXXXX")"
T0=$(date +%s)

log() { printf '[%4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*" | tee -a "$OUT/run.log" >&2; }

# shellcheck source=benches/gateway/lib.sh
source "$HERE/lib.sh"
trap cleanup EXIT

# ---------------------------------------------------------------- install
install_tools() {
  local need=()
  [ "$(dpkg-query -W -f='${Version}' wrk 2>/dev/null || true)" = "$WRK_VERSION" ] || need+=("wrk=$WRK_VERSION")
  [ "$(dpkg-query -W -f='${Version}' nginx 2>/dev/null || true)" = "$NGINX_VERSION" ] || need+=("nginx=$NGINX_VERSION")
  if [ "${#need[@]}" -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ! oha --version 2>/dev/null | grep -q " $OHA_VERSION"; then
    log "cargo install oha $OHA_VERSION"
    cargo install oha --locked --version "$OHA_VERSION" >/dev/null 2>&1
  fi
  if [ "$LITELLM" = 1 ]; then
    BENCH_VENV="${BENCH_VENV:-$HOME/.cache/keyward-litellm-venv}"
    if [ "$("$BENCH_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true)" != "$LITELLM_VERSION" ]; then
      log "installing LiteLLM $LITELLM_VERSION into $BENCH_VENV"
      python3 -m venv "$BENCH_VENV"
      "$BENCH_VENV/bin/pip" install -q -r "$HERE/litellm-requirements.txt" -c "$HERE/litellm-constraints.txt"
    fi
  fi
  if [ -z "${KEYWARD_BIN:-}" ]; then
    log "cargo build --release -p keyward"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyward-target-bench}"
    SRC="$REPO"
    if [ "$HEAD_ONLY" = 1 ]; then
      SRC="$HOME/.cache/keyward-bench-src"
      HEAD_COMMIT="$(git -C "$REPO" rev-parse HEAD)"
      # re-extract only for a new commit, so an unchanged snapshot does not rebuild
      if [ "$(cat "$SRC/.bench-commit" 2>/dev/null || true)" != "$HEAD_COMMIT" ]; then
        rm -rf "$SRC" && mkdir -p "$SRC"
        git -C "$REPO" archive HEAD | tar -x -C "$SRC"
        echo "$HEAD_COMMIT" >"$SRC/.bench-commit"
      fi
    fi
    (cd "$SRC" && cargo build --release -p keyward >/dev/null 2>"$RUN/build.log") || { cat "$RUN/build.log" >&2; exit 2; }
    KEYWARD_BIN="$CARGO_TARGET_DIR/release/keyward"
  fi
}

# ---------------------------------------------------------------- helpers
wait_http() {  # URL SECONDS
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    if curl -s -o /dev/null --max-time 2 "$1"; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for $1" >&2; return 1
}

# the pid and all its descendants
tree_pids() {
  local root=$1 all p
  all="$root"
  for p in $(pgrep -P "$root" 2>/dev/null || true); do
    all="$all $(tree_pids "$p")"
  done
  echo "$all"
}

# utime+stime of the processes, in clock ticks
cpu_ticks() {
  local sum=0 p
  for p in "$@"; do
    if [ -r "/proc/$p/stat" ]; then
      sum=$(( sum + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat") ))
    fi
  done
  echo "$sum"
}

# sum of VmHWM (peak resident set) of the processes, kB
peak_rss_kb() {
  local sum=0 p v
  for p in "$@"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    sum=$(( sum + ${v:-0} ))
  done
  echo "$sum"
}

BODY_SMALL='{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"Hello there, gateway!"}]}'
BODY_STREAM='{"model":"claude-sonnet-4-6","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"Hello there, gateway!"}]}'

# one fixed-rate oha run: NAME URL AUTH_HEADER AUTH_VALUE RATE SECONDS [BODY_FILE]
oha_run() {
  local name=$1 url=$2 hn=$3 hv=$4 rate=$5 secs=$6 body=${7:-}
  local args=(-z "${secs}s" -q "$rate" -c "$OHA_C" --latency-correction --no-tui
    --output-format json -m POST
    -H "content-type: application/json" -H "anthropic-version: 2023-06-01" -H "$hn: $hv")
  if [ -n "$body" ]; then args+=(-D "$body"); else args+=(-d "$BODY_SMALL"); fi
  oha "${args[@]}" "$url" >"$OUT/oha-$name.json" 2>"$OUT/oha-$name.err" || true
}

wrk_run() {  # NAME URL AUTH_HEADER AUTH_VALUE SECONDS [BODY_FILE]
  BENCH_AUTH_HEADER=$3 BENCH_AUTH_VALUE=$4 BENCH_BODY_FILE=${6:-} \
    wrk -t2 -c64 -d"${5}s" --latency -s "$HERE/post.lua" "$2" >"$OUT/wrk-$1.txt" 2>&1 || true
}

# streaming requests at a fixed rate: oha's first-byte percentiles
ttfb_run() {  # NAME URL AUTH_HEADER AUTH_VALUE RATE
  oha -z "${TTFB_D}s" -q "$5" -c 8 --latency-correction --no-tui --output-format json -m POST \
    -H "content-type: application/json" -H "anthropic-version: 2023-06-01" -H "$3: $4" \
    -d "$BODY_STREAM" "$2" >"$OUT/oha-ttfb-$1.json" 2>"$OUT/oha-ttfb-$1.err" || true
}

# Targets by name: URL, credential header and value, root pids (CPU and RSS
# are summed over these and their descendants).
declare -A T_URL T_HN T_HV T_PIDS
target() { T_URL[$1]=$2; T_HN[$1]=$3; T_HV[$1]=$4; T_PIDS[$1]=$5; }
pids_of() { local x; for x in ${T_PIDS[$1]}; do tree_pids "$x"; done | tr '\n' ' '; }

sat() {  # LABEL TARGET [ROUND]: warm-up, then wrk saturation (report.py takes the median of rounds)
  local t=$2 label=$1
  [ "${3:-1}" -gt 1 ] && label="$1.round$3"
  log "$label: saturation (wrk -t2 -c64 ${WRK_D}s)"
  BENCH_AUTH_HEADER=${T_HN[$t]} BENCH_AUTH_VALUE=${T_HV[$t]} \
    wrk -t2 -c64 -d"${WARM_D}s" -s "$HERE/post.lua" "${T_URL[$t]}" >/dev/null 2>&1 || true
  wrk_run "$label" "${T_URL[$t]}" "${T_HN[$t]}" "${T_HV[$t]}" "$WRK_D"
}

fixed() {  # LABEL TARGET RATE: oha at a fixed rate, with the target's CPU ticks around it
  local t=$2 p t0 t1
  log "$1: fixed rate $3/s (oha ${OHA_D}s)"
  p=$(pids_of "$t")
  # shellcheck disable=SC2086
  t0=$(cpu_ticks $p)
  oha_run "$1-$3" "${T_URL[$t]}" "${T_HN[$t]}" "${T_HV[$t]}" "$3" "$OHA_D"
  # shellcheck disable=SC2086
  t1=$(cpu_ticks $p)
  echo "ticks_before=$t0 ticks_after=$t1 clk_tck=$(getconf CLK_TCK) pids=$p" >"$OUT/cpu-$1-$3.txt"
}

stream() {  # LABEL TARGET RATE
  log "$1: streaming, time to first byte ($3/s, ${TTFB_D}s)"
  ttfb_run "$1" "${T_URL[$2]}" "${T_HN[$2]}" "${T_HV[$2]}" "$3"
}

rss() {  # LABEL TARGET
  local p
  p=$(pids_of "$2")
  # shellcheck disable=SC2086
  echo "peak_rss_kb=$(peak_rss_kb $p) pids=$p" >"$OUT/rss-$1.txt"
}

# ---------------------------------------------------------------- machine
install_tools
{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode=$MODE"
  echo "command=benches/gateway/run.sh $*"
  echo "nproc=$(nproc)"
  echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "mem_total=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -r)"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git_commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [ "$HEAD_ONLY" = 1 ]; then echo "git_dirty_crates=0"; else
    echo "git_dirty_crates=$(git -C "$REPO" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null | wc -l)"; fi
  echo "wrk=$(dpkg-query -W -f='${Version}' wrk)"
  echo "nginx=$(dpkg-query -W -f='${Version}' nginx)"
  echo "oha=$(oha --version | head -1)"
  echo "keyward_bin=$KEYWARD_BIN"
  if [ "$LITELLM" = 1 ]; then
    echo "litellm=$("$BENCH_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
  fi
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- upstream
start_mock
MOCK_HOSTPORT=${MOCK_URL#http://}
log "mock upstream at $MOCK_URL (pid $MOCK_PID)"

# ---------------------------------------------------------------- 1. direct
target direct "$MOCK_URL/v1/messages" x-api-key "$UPKEY" "$MOCK_PID"

# ---------------------------------------------------------------- 2. nginx
NGINX_PORT=$(free_port)
nginx_conf "$RUN/nginx" "$NGINX_PORT" "$MOCK_HOSTPORT"
nginx -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/nginx-error.log" &
NGINX_PID=$!; PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$NGINX_PORT/healthz" 20
log "nginx at 127.0.0.1:$NGINX_PORT (pid $NGINX_PID)"
target nginx "http://127.0.0.1:$NGINX_PORT/v1/messages" x-api-key "$UPKEY" "$NGINX_PID"

# ---------------------------------------------------------------- 3. keyward
KW="$RUN/kw"
"$KEYWARD_BIN" init --data-dir "$KW" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --upstream-url "$MOCK_URL" >/dev/null
sed -e "s|@LISTEN@|127.0.0.1:0|g" -e "s|@ADMIN_LISTEN@|127.0.0.1:0|g" -e "s|@UPSTREAM_URL@|$MOCK_URL|g" \
  "$HERE/keyward.toml.in" >"$KW/keyward.toml"
cp "$KW/keyward.toml" "$KW/keyward.base.toml"
cat "$HERE/keyward-controls.toml" >>"$KW/keyward.toml"
if "$KEYWARD_BIN" serve --config "$KW/keyward.toml" --check >"$RUN/check.log" 2>&1; then
  echo "policy_controls=on: authentication, metering, audit, and the [environments.dev] limits and shield (flag) of keyward-controls.toml" >"$OUT/keyward-controls.txt"
else
  cp "$KW/keyward.base.toml" "$KW/keyward.toml"
  { echo "policy_controls=off: this build has no policy section (serve --check rejects keyward-controls.toml); authentication and metering on"; cat "$RUN/check.log"; } >"$OUT/keyward-controls.txt"
fi
cp "$KW/keyward.toml" "$OUT/keyward.toml"
log "$(head -1 "$OUT/keyward-controls.txt")"
"$KEYWARD_BIN" serve --config "$KW/keyward.toml" >"$RUN/keyward.log" 2>&1 &
KW_PID=$!; PIDS+=("$KW_PID")
KW_URL=$(wait_for_line "$RUN/keyward.log" 'data plane listening on http://' 30 | grep -o 'http://[0-9.:]*')
KW_ADMIN=$(wait_for_line "$RUN/keyward.log" 'admin plane listening on http://' 30 | grep -o 'http://[0-9.:]*')
ADMIN_TOKEN=$(cat "$KW/admin.token")
"$KEYWARD_BIN" service add bench --owner team-bench --config "$KW/keyward.toml" >/dev/null
echo "$UPKEY" | "$KEYWARD_BIN" upstream add dev-main --env dev --config "$KW/keyward.toml" >/dev/null
VKEY=$("$KEYWARD_BIN" key create --service bench --env dev --json --config "$KW/keyward.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
# a second key of the same service with the shield off: the 1 MiB phase measures
# forwarding a large body apart from screening it
VKEY_NS=$("$KEYWARD_BIN" key create --service bench --env dev --shield off --json --config "$KW/keyward.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
log "keyward at $KW_URL, admin $KW_ADMIN (pid $KW_PID)"
curl -s -o /dev/null -w '%{http_code}\n' -H "x-api-key: $VKEY" -H 'anthropic-version: 2023-06-01' \
  -H 'content-type: application/json' -d "$BODY_SMALL" "$KW_URL/v1/messages" >"$OUT/keyward-smoke.txt"
target keyward "$KW_URL/v1/messages" x-api-key "$VKEY" "$KW_PID"

# Interleaved: each phase runs direct, nginx and keyward back to back, so that
# other load on the shared machine drifts over all three alike.
for ((round = 1; round <= SAT_ROUNDS; round++)); do
  for t in direct nginx keyward; do sat "$t" "$t" "$round"; done
done
for r in $RATES; do
  if [ "$r" = 100 ] && [ "$LITELLM" = 1 ]; then fixed direct direct 20; fixed direct direct 50; fi  # LiteLLM baselines
  for t in direct nginx keyward; do fixed "$t" "$t" "$r"; done
done
for t in direct nginx keyward; do stream "$t" "$t" 100; done
for t in direct nginx keyward; do rss "$t" "$t"; done

# ---------------------------------------------------------------- 3c. keyward, 10,000 keys
log "keyward: creating $((NKEYS - 1)) more keys through the admin API"
KSTART=$(date +%s)
oha -n "$((NKEYS - 1))" -c 4 --no-tui --output-format json -m POST \
  -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
  -d '{"service":"bench","env":"dev"}' "$KW_ADMIN/admin/v1/keys" >"$OUT/oha-create-keys.json" 2>&1 || true
echo "seconds=$(( $(date +%s) - KSTART ))" >"$OUT/create-keys.txt"
echo "keys_in_index=$(curl -s "$KW_ADMIN/metrics" -H "authorization: Bearer $ADMIN_TOKEN" | awk '/^keyward_keys / {print $2}')" >>"$OUT/create-keys.txt"
log "$(tr '\n' ' ' <"$OUT/create-keys.txt")"
for ((round = 1; round <= SAT_ROUNDS; round++)); do
  sat nginx-r2 nginx "$round"
  sat keyward-10k keyward "$round"
done
for r in 1000 2000; do
  fixed direct-r2 direct "$r"
  fixed keyward-10k keyward "$r"
done
stream direct-r2 direct 100
stream keyward-10k keyward 100
rss keyward-10k keyward

# ---------------------------------------------------------------- 1 MiB bodies
python3 - "$RUN/big.json" <<'EOF'
import json, sys
# the marker is replaced per request when the body must differ every time (post.lua, BENCH_UNIQUE)
text = "@@@@@@@@@@@@ " + ("The quick brown fox jumps over the lazy dog. " * 30000)[: 1024 * 1024 - 133]
body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
open(sys.argv[1], "w").write(json.dumps(body))
EOF
stat -c 'big_body_bytes=%s' "$RUN/big.json" >"$OUT/big-body.txt"
# keyward-noshield (a key with the shield off) before keyward, whose screening of
# 1 MiB user turns raises the process's peak RSS
for t in direct nginx keyward-noshield keyward; do
  case $t in
    direct) u="$MOCK_URL/v1/messages"; k="$UPKEY"; p="$MOCK_PID" ;;
    nginx) u="http://127.0.0.1:$NGINX_PORT/v1/messages"; k="$UPKEY"; p="$NGINX_PID" ;;
    keyward-noshield) u="$KW_URL/v1/messages"; k="$VKEY_NS"; p="$KW_PID" ;;
    keyward) u="$KW_URL/v1/messages"; k="$VKEY"; p="$KW_PID" ;;
  esac
  log "$t: 1 MiB bodies: saturation ${BIG_D}s (every body different), then 100/s ${BIG_D}s (the same body)"
  pp=$(tree_pids "$p" | tr '\n' ' ')
  # shellcheck disable=SC2086
  t0=$(cpu_ticks $pp)
  # every body different: nothing keyward remembers (the shield's scores) applies
  BENCH_UNIQUE=1 wrk_run "$t-1mib" "$u" x-api-key "$k" "$BIG_D" "$RUN/big.json"
  # shellcheck disable=SC2086
  t1=$(cpu_ticks $pp)
  echo "ticks_before=$t0 ticks_after=$t1 clk_tck=$(getconf CLK_TCK) pids=$pp" >"$OUT/cpu-$t-1mib.txt"
  # the same body at 100/s, as a conversation resends its history
  # shellcheck disable=SC2086
  t0=$(cpu_ticks $pp)
  oha_run "$t-1mib-100" "$u" x-api-key "$k" 100 "$BIG_D" "$RUN/big.json"
  # shellcheck disable=SC2086
  t1=$(cpu_ticks $pp)
  echo "ticks_before=$t0 ticks_after=$t1 clk_tck=$(getconf CLK_TCK) pids=$pp" >"$OUT/cpu-$t-1mib-100.txt"
  # shellcheck disable=SC2086
  echo "peak_rss_kb=$(peak_rss_kb $pp) pids=$pp" >"$OUT/rss-$t-1mib.txt"
done

# nginx and keyward are done: stop them so LiteLLM has the machine to itself
# ---------------------------------------------------------------- 3b. keyward, key flood
# Last of keyward's phases: the flood comes from the same address as the valid
# traffic, and failed authentication puts that address into back-off (a burst,
# then 1 s, 2 s, ... during which everything from it gets 429), so phases after
# it would measure refusals. The report shows the valid traffic's status codes.
# valid traffic at $CPU_RATE/s alone, then the same alongside $FLOOD_RATE/s of unknown keys
BADKEY="kw_dev_$(python3 -c 'import secrets,string; a=string.ascii_letters+string.digits; print("".join(secrets.choice(a) for _ in range(38)))')"
log "keyward: key flood — valid ${CPU_RATE}/s alone"
oha_run flood-valid-alone "$KW_URL/v1/messages" x-api-key "$VKEY" "$CPU_RATE" "$OHA_D"
# control: the same flood at nginx's server that answers 401 to everything, next to
# nothing per request, while the valid traffic goes to keyward: what remains of the
# slowdown is the load generator's own share of the two cores
log "keyward: key flood control — valid ${CPU_RATE}/s with ${FLOOD_RATE}/s at nginx answering 401"
oha_run flood-control-invalid "http://127.0.0.1:$REFUSE_PORT/v1/messages" x-api-key "$BADKEY" "$FLOOD_RATE" "$((OHA_D + 2))" &
FLOOD_JOB=$!
sleep 1
oha_run flood-valid-control "$KW_URL/v1/messages" x-api-key "$VKEY" "$CPU_RATE" "$OHA_D"
wait "$FLOOD_JOB" || true
log "keyward: key flood — valid ${CPU_RATE}/s with ${FLOOD_RATE}/s unknown keys"
t0=$(cpu_ticks "$KW_PID")
oha_run flood-invalid "$KW_URL/v1/messages" x-api-key "$BADKEY" "$FLOOD_RATE" "$((OHA_D + 2))" &
FLOOD_JOB=$!
sleep 1
oha_run flood-valid-with "$KW_URL/v1/messages" x-api-key "$VKEY" "$CPU_RATE" "$OHA_D"
wait "$FLOOD_JOB" || true
t1=$(cpu_ticks "$KW_PID")
echo "ticks_before=$t0 ticks_after=$t1 clk_tck=$(getconf CLK_TCK) pids=$KW_PID" >"$OUT/cpu-flood.txt"

kill -TERM "$KW_PID" "$NGINX_PID" 2>/dev/null || true
for ((i = 0; i < 100; i++)); do kill -0 "$KW_PID" 2>/dev/null || break; sleep 0.1; done
# the server log, minus colour codes and (belt and braces) any line with a secret of this run
sed 's/\x1b\[[0-9;]*m//g' "$RUN/keyward.log" | grep -v -F -e "$VKEY" -e "$VKEY_NS" -e "$UPKEY" -e "$ADMIN_TOKEN" >"$OUT/keyward-server.log" || true
# the 10,000 "virtual key created" lines say nothing the count does not
n_created=$(grep -c 'virtual key created' "$OUT/keyward-server.log" || true)
grep -v 'virtual key created' "$OUT/keyward-server.log" >"$RUN/kwlog" || true
{ cat "$RUN/kwlog"; echo "($n_created 'virtual key created' lines omitted)"; } >"$OUT/keyward-server.log"

# ---------------------------------------------------------------- 4. LiteLLM
if [ "$LITELLM" = 1 ]; then
  LL_PORT=$(free_port)
  LL_KEY="sk-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  sed -e "s|@UPSTREAM_URL@|$MOCK_URL|g" -e "s|@UPSTREAM_KEY@|$UPKEY|g" -e "s|@MASTER_KEY@|$LL_KEY|g" \
    "$HERE/litellm.yaml.in" >"$RUN/litellm.yaml"
  log "litellm: starting on 127.0.0.1:$LL_PORT"
  (cd "$RUN" && LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False LITELLM_LOG=ERROR \
    exec "$BENCH_VENV/bin/litellm" --config "$RUN/litellm.yaml" --host 127.0.0.1 --port "$LL_PORT" --num_workers 1 \
    >"$RUN/litellm.log" 2>&1) &
  LL_PID=$!; PIDS+=("$LL_PID")
  if wait_http "http://127.0.0.1:$LL_PORT/health/liveliness" 120; then
    curl -s -w '\n%{http_code}\n' -H "authorization: Bearer $LL_KEY" -H 'anthropic-version: 2023-06-01' \
      -H 'content-type: application/json' -d "$BODY_SMALL" "http://127.0.0.1:$LL_PORT/v1/messages" >"$OUT/litellm-smoke.txt" 2>&1 || true
    target litellm "http://127.0.0.1:$LL_PORT/v1/messages" authorization "Bearer $LL_KEY" "$LL_PID"
    sat litellm litellm
    for r in $LITELLM_RATES; do fixed litellm litellm "$r"; done
    stream litellm litellm 20
    rss litellm litellm
  else
    log "litellm did not start; see litellm.log"
  fi
  grep -v "$LL_KEY" "$RUN/litellm.log" | tail -200 >"$OUT/litellm.log" || true
  kill -TERM "$LL_PID" 2>/dev/null || true
fi

echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
echo "elapsed_s=$(( $(date +%s) - T0 ))" >>"$OUT/machine.txt"

# ---------------------------------------------------------------- report
python3 "$HERE/report.py" "$OUT" >"$OUT/summary.md"
cat "$OUT/summary.md"
if [ "$README" = 1 ]; then
  python3 "$HERE/report.py" --readme "$REPO/benches/README.md" "$OUT"
  log "benches/README.md updated"
fi
log "done: $OUT"
