# Shared by run.sh, profile.sh, syscalls.sh and ab.sh (sourced; it only defines functions
# and BODY): the processes to stop on exit, waiting for a line or a port, the mock
# upstream, and a keyward installation with the benchmark's config. The caller
# sets HERE, KEYWARD_BIN and RUN (a private run dir) and calls `trap cleanup EXIT`.

PIDS=()
cleanup() {  # stop every process in PIDS (TERM, then KILL), remove RUN
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$RUN"
}

# wait_for_line FILE REGEX SECONDS: prints the first matching line
wait_for_line() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for /$2/ in $1" >&2; tail -20 "$1" >&2; return 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
BODY='{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"Hello there, gateway!"}]}'

# nginx_conf DIR PORT UPSTREAM_HOSTPORT [SED_ARGS...]: nginx.conf.in rendered into
# DIR/nginx.conf, listening on PORT; sets REFUSE_PORT, the port of its server that
# answers 401 to everything (the key flood's control)
nginx_conf() {
  REFUSE_PORT=$(free_port)
  mkdir -p "$1"
  sed -e "s|@RUN@|$1|g" -e "s|@LISTEN@|127.0.0.1:$2|g" -e "s|@UPSTREAM@|$3|g" \
    -e "s|@REFUSE_LISTEN@|127.0.0.1:$REFUSE_PORT|g" "${@:4}" "$HERE/nginx.conf.in" >"$1/nginx.conf"
}

# start_mock: the mock upstream accepting a fresh upstream key; sets UPKEY, MOCK_URL, MOCK_PID
start_mock() {
  UPKEY="sk-ant-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  "$KEYWARD_BIN" mock-upstream --listen 127.0.0.1:0 --accept-key "$UPKEY" >"$RUN/mock.log" 2>&1 &
  MOCK_PID=$!; PIDS+=("$MOCK_PID")
  MOCK_URL=$(wait_for_line "$RUN/mock.log" 'listening on http://' 30 | grep -o 'http://[0-9.:]*')
}

install_keyward() {  # DIR: the benchmark's config, every control on
  "$KEYWARD_BIN" init --data-dir "$1" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --upstream-url "$MOCK_URL" >/dev/null
  sed -e "s|@LISTEN@|127.0.0.1:0|g" -e "s|@ADMIN_LISTEN@|127.0.0.1:0|g" -e "s|@UPSTREAM_URL@|$MOCK_URL|g" \
    "$HERE/keyward.toml.in" >"$1/keyward.toml"
  cat "$HERE/keyward-controls.toml" >>"$1/keyward.toml"
}
provision() {  # DIR [KEY_CREATE_ARGS...] -> prints the virtual key
  "$KEYWARD_BIN" service add bench --owner team-bench --config "$1/keyward.toml" >/dev/null
  echo "$UPKEY" | "$KEYWARD_BIN" upstream add dev-main --env dev --config "$1/keyward.toml" >/dev/null
  "$KEYWARD_BIN" key create --service bench --env dev "${@:2}" --json --config "$1/keyward.toml" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])'
}
