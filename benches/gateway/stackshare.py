#!/usr/bin/env python3
"""Read `perf script` output (with call graphs) on stdin; print the share of
samples whose stack passes through each named phase of keyward's request path.
A sample counts once per phase; phases overlap (e.g. forward includes hyper client)."""
import re
import sys

PHASES = [
    ("kernel: context switch / wake-up (schedule, try_to_wake_up, futex)", r"finish_task_switch|try_to_wake_up|futex_wait|futex_wake|__schedule"),
    ("kernel: TCP send/receive", r"tcp_sendmsg|tcp_recvmsg|tcp_v4_rcv|__tcp_transmit_skb"),
    ("epoll_wait (tokio I/O driver)", r"epoll_wait"),
    ("tokio park/unpark (worker idle, wake other worker)", r"park_internal|Unparker|unpark|Parker"),
    ("hyper server (client side connection)", r"hyper::proto::h1::role::Server|hyper::server::conn"),
    ("hyper client (upstream connection)", r"hyper::proto::h1::role::Client|hyper::client::conn|hyper_util::client::legacy"),
    ("proxy::authenticate", r"keyward_gateway::proxy::authenticate"),
    ("HMAC-SHA256 digest of the key", r"Digester::digest|sha2::|hmac::"),
    ("proxy::forward (own code, incl. callees)", r"keyward_gateway::proxy::forward"),
    ("serde_json (probe of the request, usage of the response)", r"serde_json::"),
    ("MeteredBody (response tap, usage parse)", r"MeteredBody"),
    ("date formatting (humantime, date_of_ms / month_of_ms)", r"humantime|date_of_ms|month_of_ms"),
    ("price lookup", r"PriceTable"),
    ("meter writer: SQLite inserts (off the request path, same process)", r"rusqlite|sqlite3"),
    ("tracing", r"tracing_core|tracing_subscriber|tracing::"),
    ("malloc / free", r"\bmalloc\b|_int_malloc|_int_free|\bcfree\b|malloc_consolidate|realloc|unlink_chunk"),
    ("HeaderMap (hashing, insert, append)", r"http::header::map"),
    ("tokio timer (timeout, sleep)", r"tokio::runtime::time|tokio::time::"),
]

samples = []
cur = []
for line in sys.stdin:
    if not line.strip():
        if cur:
            samples.append("\n".join(cur))
            cur = []
        continue
    cur.append(line)
if cur:
    samples.append("\n".join(cur))
n = len(samples)
print(f"{n} samples")
for name, pat in PHASES:
    rx = re.compile(pat)
    k = sum(1 for s in samples if rx.search(s))
    print(f"{100.0 * k / max(n, 1):6.1f}%  {name}")
