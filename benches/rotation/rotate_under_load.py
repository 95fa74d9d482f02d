"""Rotate a virtual key and the upstream key while traffic flows; count failures.

Timeline (fractions of the run): at 1/6 the virtual key is rotated (grace = the
whole run), at 2/6 the client switches to the new secret, at 3/6 the upstream key
is rotated (grace 1/6 of the run), at 4/6 the old upstream key is retired by the
scheduler. Four client threads send small non-streaming and streaming requests
without pause. Only loopback addresses are used; the run is bounded in time.
"""
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time

BIN, SECONDS = sys.argv[1], int(sys.argv[2])
MSG = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 16,
                  "messages": [{"role": "user", "content": "rotation under load"}]})
STREAM = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 16, "stream": True,
                     "messages": [{"role": "user", "content": "rotation under load"}]})


def spawn(args, marker, env=None):
    p = subprocess.Popen([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, **(env or {})))
    found = []
    deadline = time.time() + 60
    while len(found) < len(marker) and time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        for m in marker:
            if m in line:
                found.append(re.search(r"http://([0-9.:]+)", line).group(1))
    if len(found) < len(marker):
        p.kill()
        sys.exit(f"{args[0]} did not start")
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    return p, found


def kw(args, cfg, stdin=None):
    out = subprocess.run([BIN] + args + ["--config", cfg], input=stdin, capture_output=True, text=True, check=True)
    return out.stdout


old_up, new_up = "sk-ant-bench-" + secrets.token_hex(16), "sk-ant-bench-" + secrets.token_hex(16)
mock, (mock_addr,) = spawn(["mock-upstream", "--listen", "127.0.0.1:0", "--accept-key", old_up, "--accept-key", new_up],
                           ["listening on"])
d = tempfile.mkdtemp(prefix="kw-rotation-")
subprocess.run([BIN, "init", "--data-dir", d + "/kw", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                "--upstream-url", f"http://{mock_addr}"], check=True, capture_output=True)
cfg = d + "/kw/keyward.toml"
with open(cfg, "a") as f:
    f.write('\n[keys]\nrotation_check_interval = "1s"\n')
gw, (data_addr, _admin) = spawn(["serve", "--config", cfg], ["data plane listening", "admin plane listening"])
try:
    kw(["service", "add", "load", "--owner", "bench"], cfg)
    kw(["upstream", "add", "main", "--env", "prod"], cfg, stdin=old_up)
    created = json.loads(kw(["key", "create", "--service", "load", "--env", "prod", "--json"], cfg))
    key_id, current = created["id"], created["secret"]
    host, port = data_addr.split(":")
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0, "stream_ok": 0}
    failures = []
    stop = time.time() + SECONDS

    def client():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        n = 0
        while time.time() < stop:
            with lock:
                key = current
            body = STREAM if n % 4 == 0 else MSG
            n += 1
            try:
                conn.request("POST", "/v1/messages", body=body, headers={
                    "x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                good = r.status == 200 and (b"message_stop" in data if body is STREAM else b'"usage"' in data)
            except Exception as e:  # noqa: BLE001 - every failure counts
                good, data = False, repr(e).encode()
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
            with lock:
                if good:
                    counts["ok"] += 1
                    counts["stream_ok"] += body is STREAM
                else:
                    counts["failed"] += 1
                    failures.append(data[:200])

    threads = [threading.Thread(target=client) for _ in range(4)]
    t0 = time.time()
    for t in threads:
        t.start()
    step = SECONDS / 6
    time.sleep(step)
    rotated = json.loads(kw(["key", "rotate", key_id, "--grace", f"{SECONDS}s", "--json"], cfg))
    events = [f"{time.time() - t0:5.1f}s virtual key rotated (same id {rotated['id']})"]
    time.sleep(step)
    with lock:
        current = rotated["secret"]
    events.append(f"{time.time() - t0:5.1f}s client switched to the new virtual key")
    time.sleep(step)
    kw(["upstream", "rotate", "main", "--grace", f"{int(step)}s"], cfg, stdin=new_up)
    events.append(f"{time.time() - t0:5.1f}s upstream key rotated (old one loaded for {int(step)}s)")
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    print("\n".join(events))
    print(f"requests: {counts['ok'] + counts['failed']} in {elapsed:.1f}s "
          f"({(counts['ok'] + counts['failed']) / elapsed:.0f}/s), ok {counts['ok']} "
          f"(streams {counts['stream_ok']}), failed {counts['failed']}")
    for f in failures[:5]:
        print("  failure:", f)
    sys.exit(1 if counts["failed"] else 0)
finally:
    gw.terminate()
    mock.terminate()
    gw.wait(30)
    mock.wait(30)
