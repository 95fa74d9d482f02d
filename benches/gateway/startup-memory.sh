#!/usr/bin/env bash
# RSS of `keyward serve` (the benchmark config) with no keys, after creating
# NKEYS keys through the admin API, and after a restart with them; the last
# process's /proc/PID/smaps is kept in the run dir.
#   benches/gateway/startup-memory.sh BIN [NKEYS]      (default 10000)
set -euo pipefail
BIN=$1; N=${2:-10000}
HERE=$(cd "$(dirname "$0")" && pwd)
R=${RUN_DIR:-/tmp/keyward-startup-memory}
rm -rf "$R"; mkdir -p "$R"
UPKEY="sk-ant-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$BIN" mock-upstream --listen 127.0.0.1:0 --accept-key "$UPKEY" >"$R/mock.log" 2>&1 &
MP=$!
trap 'kill $MP ${KP:-} 2>/dev/null || true' EXIT
sleep 1
MOCK_URL=$(grep -o 'http://[0-9.:]*' "$R/mock.log" | head -1)
KW=$R/kw
"$BIN" init --data-dir "$KW" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --upstream-url "$MOCK_URL" >/dev/null
sed -e "s|@LISTEN@|127.0.0.1:0|g" -e "s|@ADMIN_LISTEN@|127.0.0.1:0|g" -e "s|@UPSTREAM_URL@|$MOCK_URL|g" \
  "$HERE/keyward.toml.in" >"$KW/keyward.toml"
cat "$HERE/keyward-controls.toml" >>"$KW/keyward.toml"
start() {
  "$BIN" serve --config "$KW/keyward.toml" >"$R/kw.log" 2>&1 &
  KP=$!
  sleep 2
  ADMIN=$(grep -o 'admin plane listening on http://[0-9.:]*' "$R/kw.log" | grep -o 'http://.*')
}
rss() { echo "$1: $(grep -E 'VmRSS|VmHWM' "/proc/$KP/status" | tr -s ' \n\t' ' ')"; }
start
"$BIN" service add bench --owner team-bench --config "$KW/keyward.toml" >/dev/null
echo "$UPKEY" | "$BIN" upstream add dev-main --env dev --config "$KW/keyward.toml" >/dev/null
rss "start, no keys"
python3 "$HERE/create_keys.py" "$ADMIN" "$KW/admin.token" "$N"
rss "after creating $N keys"
kill "$KP"; wait "$KP" 2>/dev/null || true
start
rss "restart with $N keys"
cp "/proc/$KP/smaps" "$R/smaps"
