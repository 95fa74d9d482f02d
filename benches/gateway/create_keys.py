"""Create N virtual keys through the admin API (4 keep-alive connections).
usage: create_keys.py ADMIN_URL TOKEN_FILE N"""
import http.client
import json
import sys
import threading

host, port = sys.argv[1].removeprefix("http://").split(":")
token = open(sys.argv[2]).read().strip()
n = int(sys.argv[3])


def worker(count):
    c = http.client.HTTPConnection(host, int(port))
    for _ in range(count):
        body = json.dumps({"service": "bench", "env": "dev"})
        c.request("POST", "/admin/v1/keys", body=body,
                  headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status not in (200, 201):
            sys.exit(f"key creation failed: HTTP {r.status}")


threads = [threading.Thread(target=worker, args=(n // 4 + (i < n % 4),)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
