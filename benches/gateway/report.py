#!/usr/bin/env python3
"""Summarise one run of benches/gateway/run.sh (raw files in a results dir).

    report.py RESULTS_DIR                      -> markdown on stdout, summary.json beside the raw files
    report.py --readme benches/README.md DIR   -> replace the generated part of its "## Gateway" section

Added latency is (through the proxy) minus (direct), percentile by percentile,
from runs at the same fixed rate in the same invocation.
"""

import json
import os
import re
import statistics
import sys

BEGIN = "<!-- gateway-results:begin (written by benches/gateway/report.py) -->"
END = "<!-- gateway-results:end -->"

# issue 9 targets for keyward
T_THROUGHPUT_VS_NGINX = 0.9
T_CPU_VS_NGINX = 1.2
T_ADDED_P99_MS = 0.5
T_TTFB_ADDED_MS = 0.2
T_RSS_MB = 64
T_FLOOD_SLOWDOWN = 0.10


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def kv(path):
    """key=value files: one pair per line, or several space-separated pairs on a line."""
    text = read(path) or ""
    out = {}
    for line in text.splitlines():
        pairs = re.findall(r"(?:^|\s)([A-Za-z_][\w.]*)=", line)
        if len(pairs) > 1:
            for part in line.split():
                if "=" in part:
                    k, v = part.split("=", 1)
                    out[k] = v
        elif "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def wrk(d, name):
    """Saturation: the median round (by req/s) of wrk-NAME.txt, wrk-NAME.round2.txt, ..."""
    rounds = [r for r in [wrk1(d, f"wrk-{name}.txt")] + [
        wrk1(d, fn) for fn in sorted(os.listdir(d)) if fn.startswith(f"wrk-{name}.round")] if r]
    if not rounds:
        return None
    rounds.sort(key=lambda r: r["rps"] or 0)
    mid = dict(rounds[len(rounds) // 2])
    mid["rounds_rps"] = [r["rps"] for r in rounds]
    mid["non2xx"] = sum(r["non2xx"] for r in rounds)
    return mid


def wrk1(d, fname):
    text = read(os.path.join(d, fname))
    if not text:
        return None
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    errs = re.search(r"Socket errors:(.*)", text)
    lat = {}
    for p in ("50", "99"):
        mm = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if mm:
            lat[p] = float(mm.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[mm.group(2)]
    return {
        "rps": float(m.group(1)) if m else None,
        "requests": int(total.group(1)) if total else None,
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errs.group(1).strip() if errs else "",
        "p50_ms": lat.get("50"),
        "p99_ms": lat.get("99"),
    }


def oha(d, name):
    text = read(os.path.join(d, f"oha-{name}.json"))
    if not text:
        return None
    try:
        j = json.loads(text)
    except ValueError:
        return {"error": text[:300]}
    s = j.get("summary", {})
    lp = j.get("latencyPercentiles", {})
    codes = j.get("statusCodeDistribution", {}) or {}
    ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
    total = sum(codes.values())
    # the one request in flight when -z runs out is "aborted due to deadline": not an error
    errors = sum(v for k, v in (j.get("errorDistribution") or {}).items() if "deadline" not in k)

    def ms(k):
        v = lp.get(k)
        return None if v is None else v * 1000.0

    return {
        "rps": s.get("requestsPerSec"),
        "requests": total,
        "ok": ok,
        "status": codes,
        "errors": errors,
        "p50_ms": ms("p50"),
        "p99_ms": ms("p99"),
        "p999_ms": ms("p99.9"),
    }


def cpu(d, name, requests):
    c = kv(os.path.join(d, f"cpu-{name}.txt"))
    if not c or not requests:
        return None
    secs = (int(c["ticks_after"]) - int(c["ticks_before"])) / int(c["clk_tck"])
    return secs * 1000.0 / requests


def ttfb(d, name):
    """Streaming requests at a fixed rate: oha's time to first byte."""
    text = read(os.path.join(d, f"oha-ttfb-{name}.json"))
    if not text:
        return None
    try:
        j = json.loads(text)
    except ValueError:
        return None
    fb = j.get("firstBytePercentiles") or {}
    codes = j.get("statusCodeDistribution", {}) or {}

    def ms(k):
        v = fb.get(k)
        return None if v is None else v * 1000.0

    return {"n": sum(codes.values()), "status": codes, "p50_ms": ms("p50"), "p99_ms": ms("p99")}


def rss_mb(d, name):
    r = kv(os.path.join(d, f"rss-{name}.txt"))
    return int(r["peak_rss_kb"]) / 1024.0 if r.get("peak_rss_kb") else None


def f(v, nd=2):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def fr(v):
    """A ratio: two decimals, three significant digits when small."""
    if v is None:
        return "—"
    return f"{v:.2f}" if v >= 0.1 else f"{v:.3g}"


def rng(w):
    r = [x for x in (w or {}).get("rounds_rps", []) if x]
    return f" [{min(r):.0f}–{max(r):.0f}]" if len(r) > 1 else ""


def sub(a, b):
    return None if a is None or b is None else a - b


def ratio(a, b):
    return None if a is None or not b else a / b


def verdict(ok):
    return "—" if ok is None else ("met" if ok else "**missed**")


def summarise(d):
    m = kv(os.path.join(d, "machine.txt"))
    targets = ["direct", "nginx", "keyward", "litellm", "direct-r2", "nginx-r2", "keyward-10k"]
    rates = {"direct": [20, 50, 100, 1000, 2000], "nginx": [100, 1000, 2000], "keyward": [100, 1000, 2000],
             "direct-r2": [1000, 2000], "nginx-r2": [], "keyward-10k": [1000, 2000], "litellm": [20, 50, 100]}
    cpu_rate = {t: 1000 for t in targets}
    cpu_rate["litellm"] = 100
    s = {"machine": m, "targets": {}}
    for t in targets:
        w = wrk(d, t)
        if w is None and not any(os.path.exists(os.path.join(d, f"oha-{t}-{r}.json")) for r in rates[t]):
            continue
        fixed = {r: oha(d, f"{t}-{r}") for r in rates[t]}
        cr = cpu_rate[t]
        s["targets"][t] = {
            "wrk": w,
            "fixed": fixed,
            "cpu_ms_per_req": cpu(d, f"{t}-{cr}", (fixed.get(cr) or {}).get("requests")),
            "cpu_rate": cr,
            "ttfb": ttfb(d, t),
            "rss_mb": rss_mb(d, t),
        }
    big = {}
    for t in ["direct", "nginx", "keyward-noshield", "keyward"]:
        w = wrk(d, f"{t}-1mib")
        o = oha(d, f"{t}-1mib-100")
        if w or o:
            big[t] = {"wrk": w, "fixed100": o,
                      "cpu_ms_per_req": cpu(d, f"{t}-1mib-100", (o or {}).get("requests")),
                      # runs before the bodies differed per request have no cpu-NAME-1mib.txt
                      "cpu_sat_ms_per_req": cpu(d, f"{t}-1mib", (w or {}).get("requests")),
                      "rss_mb": rss_mb(d, f"{t}-1mib")}
    s["big"] = big
    fl = {"alone": oha(d, "flood-valid-alone"), "with": oha(d, "flood-valid-with"),
          "invalid": oha(d, "flood-invalid"),
          # runs before the control existed have neither file
          "control": oha(d, "flood-valid-control"), "control_invalid": oha(d, "flood-control-invalid")}
    c = kv(os.path.join(d, "cpu-flood.txt"))
    kwrow = s["targets"].get("keyward") or {}
    if c and fl["invalid"] and fl["with"] and kwrow.get("cpu_ms_per_req") is not None:
        total_ms = (int(c["ticks_after"]) - int(c["ticks_before"])) * 1000.0 / int(c["clk_tck"])
        valid_ms = kwrow["cpu_ms_per_req"] * (fl["with"].get("requests") or 0)
        n_bad = fl["invalid"].get("requests") or 0
        fl["cpu_ms_per_refusal"] = (total_ms - valid_ms) / n_bad if n_bad else None
    s["flood"] = fl
    s["create_keys"] = kv(os.path.join(d, "create-keys.txt"))
    s["controls"] = (read(os.path.join(d, "keyward-controls.txt")) or "").strip().splitlines()[:1]
    return s


def markdown(s, d):
    m = s["machine"]
    T = s["targets"]
    out = []
    rel = os.path.relpath(d, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    out.append(f"Run `{m.get('command', 'benches/gateway/run.sh').strip()}` ({m.get('mode')}) on "
               f"{m.get('date_utc')}, commit `{m.get('git_commit')}`"
               + (f" with {m.get('git_dirty_crates')} uncommitted change(s) under crates/"
                  if m.get("git_dirty_crates", "0") != "0" else "")
               + f"; raw output in [`{rel}/`]({rel}/).")
    out.append("")
    out.append(f"Machine: {m.get('nproc')} shared cores ({m.get('cpu_model')}), {m.get('mem_total')}, "
               f"Linux {m.get('kernel')}; load average {m.get('loadavg_start')} at the start, "
               f"{m.get('loadavg_end')} at the end. Load generator, upstream and proxy share the two "
               f"cores, so absolute figures are low and noisy; **the ratios are what to read**, each "
               f"measured in this same run. Tools: wrk {m.get('wrk')}, oha {m.get('oha', '').replace('oha ', '')}, "
               f"nginx {m.get('nginx')}, LiteLLM {m.get('litellm', 'not run')}. "
               f"keyward controls: {'; '.join(s['controls']) or 'unknown'}.")
    out.append("")
    d_ = T.get("direct", {})
    ng = T.get("nginx", {})
    kw = T.get("keyward", {})

    # saturation
    out.append("| | saturation req/s (wrk -t2 -c64; median of rounds, [min–max]) | vs nginx | non-2xx | CPU ms/request | vs nginx | peak RSS MB | streaming TTFB p50 / p99 ms | added TTFB p50 / p99 ms |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    def base_of(t):
        return (T.get("direct-r2") or d_) if t == "keyward-10k" else d_

    def nginx_of(t):
        return (T.get("nginx-r2") or ng) if t == "keyward-10k" else ng

    for t, row in T.items():
        w = row["wrk"] or {}
        tt = row["ttfb"] or {}
        dt = (base_of(t).get("ttfb") or {})
        cpu_note = f" (at {row['cpu_rate']}/s)"
        out.append(
            f"| {t} | {f(w.get('rps'), 0)}{rng(w)} | {fr(ratio(w.get('rps'), (nginx_of(t).get('wrk') or {}).get('rps')))} | "
            f"{f(w.get('non2xx'))} | {f(row['cpu_ms_per_req'], 3)}{cpu_note} | "
            f"{fr(ratio(row['cpu_ms_per_req'], ng.get('cpu_ms_per_req')))} | {f(row['rss_mb'], 1)} | "
            f"{f(tt.get('p50_ms'), 3)} / {f(tt.get('p99_ms'), 3)} | "
            + ("—" if t.startswith("direct") else
               f"{f(sub(tt.get('p50_ms'), dt.get('p50_ms')), 3)} / {f(sub(tt.get('p99_ms'), dt.get('p99_ms')), 3)}")
            + " |")
    out.append("")
    out.append("Added latency at fixed rates (oha `-q R --latency-correction -c 32`), ms, (proxy) − (direct) per percentile; "
               "achieved rate and non-2xx in brackets where they fall short:")
    out.append("")
    out.append("| | rate/s | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 |")
    out.append("|---|---|---|---|---|---|---|---|")
    for t, row in T.items():
        for r, o in row["fixed"].items():
            if not o:
                continue
            base = (base_of(t).get("fixed") or {}).get(r) or {}
            note = ""
            if o.get("rps") and o["rps"] < 0.95 * r:
                note += f" (achieved {o['rps']:.0f}/s)"
            if o.get("requests") and o.get("ok") != o.get("requests"):
                note += f" ({o['requests'] - o['ok']} non-2xx)"
            if o.get("errors"):
                note += f" ({o['errors']} errors)"
            added = ["—"] * 3 if t.startswith("direct") else [
                f(sub(o.get(k), base.get(k)), 3) for k in ("p50_ms", "p99_ms", "p999_ms")]
            out.append(f"| {t} | {r}{note} | {f(o.get('p50_ms'), 3)} | {f(o.get('p99_ms'), 3)} | "
                       f"{f(o.get('p999_ms'), 3)} | {added[0]} | {added[1]} | {added[2]} |")
    out.append("")

    big = s["big"]
    if big:
        unique = any(b.get("cpu_sat_ms_per_req") is not None for b in big.values())
        out.append("1 MiB request bodies (`max_tokens` 16); `keyward-noshield` is a key of the same service "
                   "with the shield off (every other control on), `keyward` the benchmark key (shield in flag mode, "
                   "so the 1 MiB user turn is screened)" + (
                       ". Saturation sends a different body every time (nothing remembered applies); "
                       "the 100/s run sends the same body again and again, as a conversation resends its history "
                       "(keyward remembers each key's screening scores):" if unique else ":"))
        out.append("")
        if unique:
            out.append("| | saturation req/s, bodies differ | vs nginx | CPU ms/request there | "
                       "p50 / p99 ms at 100/s, same body | added p99 ms | CPU ms/request there | peak RSS MB |")
            out.append("|---|---|---|---|---|---|---|---|")
        else:
            out.append("| | saturation req/s | vs nginx | p50 / p99 ms at 100/s | added p99 ms | CPU ms/request | "
                       "peak RSS MB |")
            out.append("|---|---|---|---|---|---|---|")
        bd = (big.get("direct") or {}).get("fixed100") or {}
        bn = ((big.get("nginx") or {}).get("wrk") or {}).get("rps")
        for t, b in big.items():
            w = b["wrk"] or {}
            o = b["fixed100"] or {}
            sat_cpu = f" {f(b.get('cpu_sat_ms_per_req'), 3)} |" if unique else ""
            out.append(f"| {t} | {f(w.get('rps'), 0)} | {f(ratio(w.get('rps'), bn))} |{sat_cpu} "
                       f"{f(o.get('p50_ms'), 3)} / {f(o.get('p99_ms'), 3)} | "
                       f"{'—' if t == 'direct' else f(sub(o.get('p99_ms'), bd.get('p99_ms')), 3)} | "
                       f"{f(b['cpu_ms_per_req'], 3)} | {f(b['rss_mb'], 1)} |")
        out.append("")

    fl = s["flood"]
    a, w_, inv = fl.get("alone") or {}, fl.get("with") or {}, fl.get("invalid") or {}
    if a:
        out.append(f"Key flood: valid traffic at 1000/s alone, then alongside unknown keys offered at 10,000/s "
                   f"(achieved {f(inv.get('rps'), 0)}/s, {inv.get('status', {})}, {inv.get('errors', 0)} errors):")
        out.append("")
        out.append("| valid traffic | achieved/s | p50 ms | p99 ms | p99.9 ms | statuses |")
        out.append("|---|---|---|---|---|---|")
        out.append(f"| alone | {f(a.get('rps'), 0)} | {f(a.get('p50_ms'), 3)} | {f(a.get('p99_ms'), 3)} | {f(a.get('p999_ms'), 3)} | {a.get('status', {})} |")
        ctl, ctl_inv = fl.get("control") or {}, fl.get("control_invalid") or {}
        if ctl:
            out.append(f"| with the same flood at nginx answering 401 (control; achieved {f(ctl_inv.get('rps'), 0)}/s) | "
                       f"{f(ctl.get('rps'), 0)} | {f(ctl.get('p50_ms'), 3)} | {f(ctl.get('p99_ms'), 3)} | "
                       f"{f(ctl.get('p999_ms'), 3)} | {ctl.get('status', {})} |")
        out.append(f"| with the flood | {f(w_.get('rps'), 0)} | {f(w_.get('p50_ms'), 3)} | {f(w_.get('p99_ms'), 3)} | {f(w_.get('p999_ms'), 3)} | {w_.get('status', {})} |")
        out.append("")
        if ctl:
            out.append("The control sends the same flood to a server that refuses at next to no cost (nginx, "
                       "`return 401`) while the valid traffic goes to keyward: the slowdown left there is the load "
                       "generator's (and nginx's cheap refusals') share of the two cores, not keyward's.")
            out.append("")
        if any(not str(k).startswith("2") for k in (w_.get("status") or {})):
            out.append("The flood and the valid traffic come from the same address (127.0.0.1): failed "
                       "authentication puts that address into back-off, so the valid requests alongside the "
                       "flood were refused with 429 too (by design; see README, Admin access). Their latencies "
                       "above are those of refusals, not of served requests.")
            out.append("")
        if fl.get("cpu_ms_per_refusal") is not None:
            out.append(f"keyward's CPU per refused request ≈ {fl['cpu_ms_per_refusal']:.3f} ms (its CPU over the flood "
                       f"phase minus the valid requests at the per-request cost measured above, divided by the refusals); "
                       f"the load generator's 10,000/s takes most of the rest of the two cores.")
            out.append("")
    ck = s["create_keys"]
    if ck:
        out.append(f"10,000 keys: {int(ck.get('keys_in_index', '0') or 0):,} keys in the index after creating them "
                   f"through the admin API in {ck.get('seconds')} s (rows `keyward-10k`, measured against `direct-r2` and `nginx-r2` "
                   f"run beside it).")
        out.append("")

    # targets
    out.append("Against the issue's targets for keyward (ratios from this run):")
    out.append("")
    out.append("| target | measured | |")
    out.append("|---|---|---|")
    checks = []
    for label, t in (("", "keyward"), (" (10,000 keys)", "keyward-10k")):
        row = T.get(t)
        if not row:
            continue
        r = ratio((row["wrk"] or {}).get("rps"), (nginx_of(t).get("wrk") or {}).get("rps"))
        checks.append((f"throughput ≥ 0.9× nginx{label}", f(r), None if r is None else r >= T_THROUGHPUT_VS_NGINX))
        c = ratio(row["cpu_ms_per_req"], ng.get("cpu_ms_per_req"))
        checks.append((f"CPU/request ≤ 1.2× nginx{label}", f(c), None if c is None else c <= T_CPU_VS_NGINX))
        for rr in (1000, 2000):
            o = row["fixed"].get(rr) or {}
            base = (base_of(t).get("fixed") or {}).get(rr) or {}
            ad = sub(o.get("p99_ms"), base.get("p99_ms"))
            checks.append((f"added p99 ≤ 0.5 ms at {rr}/s{label}", f(ad, 3) + " ms",
                           None if ad is None else ad <= T_ADDED_P99_MS))
        if t == "keyward":
            tt = row["ttfb"] or {}
            ad = sub(tt.get("p50_ms"), (d_.get("ttfb") or {}).get("p50_ms"))
            checks.append(("streaming adds ≤ 0.2 ms to TTFB (p50)", f(ad, 3) + " ms",
                           None if ad is None else ad <= T_TTFB_ADDED_MS))
        checks.append((f"RSS ≤ 64 MB under load{label}", f(row["rss_mb"], 1) + " MB",
                       None if row["rss_mb"] is None else row["rss_mb"] <= T_RSS_MB))
    for t, label in (("keyward", "1 MiB bodies"), ("keyward-noshield", "1 MiB bodies, key with the shield off")):
        kb = big.get(t)
        if not kb:
            continue
        r = ratio((kb["wrk"] or {}).get("rps"), ((big.get("nginx") or {}).get("wrk") or {}).get("rps"))
        checks.append((f"throughput ≥ 0.9× nginx ({label})", f(r), None if r is None else r >= T_THROUGHPUT_VS_NGINX))
        checks.append((f"RSS ≤ 64 MB ({label})", f(kb["rss_mb"], 1) + " MB",
                       None if kb["rss_mb"] is None else kb["rss_mb"] <= T_RSS_MB))
    served_alongside = not any(not str(k).startswith("2") for k in (w_.get("status") or {}))
    if a and w_ and served_alongside:
        for k in ("p50_ms", "p99_ms"):
            sl = ratio(w_.get(k), a.get(k))
            checks.append((f"key flood slows valid {k[:3]} ≤ 10 %", "—" if sl is None else f"{(sl - 1) * 100:+.0f} %",
                           None if sl is None else sl - 1 <= T_FLOOD_SLOWDOWN))
        ctl = fl.get("control") or {}
        for k in ("p50_ms", "p99_ms") if ctl else ():
            sl = ratio(ctl.get(k), a.get(k))
            checks.append((f"(control: the same flood at nginx answering 401 slows valid {k[:3]})",
                           "—" if sl is None else f"{(sl - 1) * 100:+.0f} %", None))
    for label, val, ok in checks:
        out.append(f"| {label} | {val} | {verdict(ok)} |")
    s["checks"] = [{"target": l, "measured": v, "met": ok} for l, v, ok in checks]
    return "\n".join(out) + "\n"


def main():
    args = sys.argv[1:]
    readme = None
    if args and args[0] == "--readme":
        readme, args = args[1], args[2:]
    d = args[0]
    s = summarise(d)
    md = markdown(s, d)
    with open(os.path.join(d, "summary.json"), "w") as fh:
        json.dump(s, fh, indent=1, default=str)
    if readme is None:
        sys.stdout.write(md)
        return
    text = read(readme) or "# Benchmarks\n"
    block = f"{BEGIN}\n{md}{END}"
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        _, post = rest.split(END, 1)
        text = pre + block + post
    elif "## Gateway" in text:
        # at the end of the Gateway section (before the next "## " heading)
        start = text.index("## Gateway")
        nxt = text.find("\n## ", start + 1)
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:end].rstrip("\n") + f"\n\n{block}\n\n" + text[end:].lstrip("\n")
    else:
        text = text.rstrip("\n") + f"\n\n## Gateway\n\n{block}\n"
    with open(readme, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
