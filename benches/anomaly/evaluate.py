#!/usr/bin/env python3
"""Score a replay against the generator's ground truth. Standard library only.

usage: evaluate.py TRUTH.json ALERTS.json [--markdown]

An incident is detected by the first alert on its key (or upstream) whose rule is
one it expects, raised at or after the incident's start and before its end plus
5 minutes. Delay is measured from `start`, or for budget incidents from
`detect_from` (when the key's spend crossed the first budget level; a budget rule
cannot fire before its threshold is reached). Any alert on the incident's subject
between its start and its end plus 20 minutes (resolve_after + 5 min) belongs to
the incident; every other alert is a false alert.
"""
import json
import sys
from datetime import datetime, timedelta


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def main():
    truth = json.load(open(sys.argv[1]))
    alerts = json.load(open(sys.argv[2]))["alerts"]
    md = "--markdown" in sys.argv
    start, end = ts(truth["start"]), ts(truth["end"])
    key_weeks = truth["keys"] * (end - start).total_seconds() / (7 * 86400)
    incs = truth["incidents"]
    used = set()
    rows = []
    for inc in incs:
        subj = inc["key"] or inc["upstream"]
        s, e = ts(inc["start"]), ts(inc["end"])
        frm = ts(inc["detect_from"]) if inc.get("detect_from") else s
        hit = None
        for i, a in enumerate(alerts):
            asubj = a.get("key") or a.get("upstream")
            at = ts(a["at"])
            if asubj != subj:
                continue
            if s <= at <= e + timedelta(minutes=20):
                used.add(i)
            if hit is None and a["rule"] in inc["expect"] and s <= at <= e + timedelta(minutes=5):
                hit = (at, a["rule"])
        delay = None if hit is None else max(0.0, (hit[0] - frm).total_seconds())
        rows.append((inc, hit, delay))
    false = [a for i, a in enumerate(alerts) if i not in used]
    detected = [r for r in rows if r[2] is not None]
    within = [r for r in rows if r[2] is not None and r[2] <= 120]
    fa_per_20 = len(false) / key_weeks * 20
    if md:
        print("| incident | subject | size | detected by | delay |")
        print("|---|---|---|---|---|")
        for inc, hit, delay in rows:
            subj = inc["key"] or inc["upstream"]
            d = "**missed**" if delay is None else f"{delay:.0f} s"
            print(f"| {inc['id']} | {subj} | {inc['size']} | {hit[1] if hit else '-'} | {d} |")
        print()
        print(f"- incidents detected: {len(detected)}/{len(rows)}; within 2 minutes: {len(within)}/{len(rows)}")
        if detected:
            ds = sorted(r[2] for r in detected)
            print(f"- detection delay: median {ds[len(ds)//2]:.0f} s, max {ds[-1]:.0f} s")
        print(f"- false alerts: {len(false)} over {key_weeks:.0f} key-weeks = {fa_per_20:.2f} per 20 key-weeks")
        for a in false:
            print(f"  - false: {a['rule']} {a.get('key') or a.get('upstream')} at {a['at']}")
    else:
        json.dump({
            "incidents": len(rows), "detected": len(detected), "within_2min": len(within),
            "delays_s": {r[0]["id"]: r[2] for r in rows},
            "false_alerts": len(false), "key_weeks": key_weeks,
            "false_per_20_key_weeks": fa_per_20, "false": false,
        }, sys.stdout, indent=1)
        print()
    ok = len(within) == len(rows) and fa_per_20 <= 1.0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
