#!/usr/bin/env python3
"""Run keyward and its peers on a corpus made by gen_corpus.py, on the same
inputs in the same run; print wall and CPU time, throughput and
recall/precision for Anthropic keys against the planted ground truth.

Usage: run.py --corpus DIR [--runs 3] [--keyward PATH] [--kingfisher PATH]
              [--detect-secrets PATH] [--rg PATH] [--json OUT]
A tool whose path is not given or not found is skipped (and said so).
"""

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

PATTERN = r"sk-ant-(api03|admin01)-[A-Za-z0-9_-]{93}AA"


def timed(cmd, out_path=None, timeout=None):
    """Run cmd; return (wall seconds, cpu seconds, stdout bytes, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.stdout, p.returncode


def measure(name, cmd, runs, timeout=None):
    timed(cmd, timeout=timeout)  # warm-up: page cache, rule caches
    walls, cpus, out, code = [], [], b"", 0
    for _ in range(runs):
        w, c, out, code = timed(cmd, timeout=timeout)
        walls.append(w)
        cpus.append(c)
    return {"tool": name, "cmd": " ".join(cmd), "wall_s": statistics.median(walls),
            "cpu_s": statistics.median(cpus), "exit": code}, out


def sha256(s):
    return hashlib.sha256(s.encode()).hexdigest()


def sha1(s):
    return hashlib.sha1(s.encode()).hexdigest()


def score(found, truth):
    tp = len(found & truth)
    return {"planted": len(truth), "reported": len(found), "true_pos": tp,
            "recall": round(tp / len(truth), 4) if truth else None,
            "precision": round(tp / len(found), 4) if found else None}


def tree_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keyward")
    ap.add_argument("--kingfisher")
    ap.add_argument("--detect-secrets")
    ap.add_argument("--rg")
    ap.add_argument("--json")
    ap.add_argument("--detect-secrets-timeout", type=int, default=1800)
    a = ap.parse_args()
    tree = os.path.join(a.corpus, "tree")
    repo = os.path.join(a.corpus, "repo.git")
    truth = json.load(open(os.path.join(a.corpus, "truth.json")))["secrets"]
    anth = [s for s in truth if s["kind"].startswith("anthropic")]
    t_tree = {s["secret"] for s in anth if s["where"] == "tree"}
    t_hist = {s["secret"] for s in anth if s["where"].startswith("history")}
    size_tree = tree_bytes(tree)
    # history throughput is over the blob bytes a scanner must inflate and read
    sizes = subprocess.run(["git", "-C", repo, "cat-file", "--batch-all-objects",
                            "--batch-check=%(objecttype) %(objectsize)"],
                           stdout=subprocess.PIPE, check=True).stdout.decode().split("\n")
    size_repo = sum(int(l.split()[1]) for l in sizes if l.startswith("blob "))
    packed = tree_bytes(repo)
    by256 = {sha256(s): s for s in t_tree | t_hist}
    by1 = {sha1(s): s for s in t_tree | t_hist}
    results = []
    tmp = tempfile.mkdtemp()
    j = str(a.threads)

    def have(p):
        return p and (os.path.exists(p) or shutil.which(p))

    if have(a.keyward):
        for target, path, extra, t in [("tree", tree, [], t_tree), ("history", repo, ["--git"], t_hist)]:
            out = os.path.join(tmp, f"kw-{target}.json")
            r, _ = measure("keyward", [a.keyward, "scan", *extra, "--threads", j, "--no-progress",
                                       "--format", "json", "-o", out, path], a.runs)
            d = json.load(open(out))
            found = {by256.get(f["fingerprint"], "other:" + f["fingerprint"])
                     for f in d["findings"] if f["kind"].startswith("anthropic")}
            r.update(target=target, **score(found, t))
            results.append(r)
    else:
        print("keyward: not given")

    if have(a.kingfisher):
        for target, path, extra, t in [("tree", tree, ["--git-history", "none"], t_tree),
                                       ("history", repo, ["--git-history", "full"], t_hist)]:
            out = os.path.join(tmp, f"kf-{target}.json")
            r, _ = measure("kingfisher", [a.kingfisher, "scan", path, *extra, "--no-validate",
                                          "--no-update-check", "-j", j, "--format", "json",
                                          "-o", out], a.runs)
            d = json.load(open(out))
            found = {f["finding"]["snippet"] for f in d["findings"]
                     if "anthropic" in f["rule"]["id"] and "session" not in f["rule"]["id"]}
            r.update(target=target, **score(found, t))
            results.append(r)
    else:
        print("kingfisher: not given")

    if have(a.detect_secrets):
        r, out = measure("detect-secrets", [a.detect_secrets, "scan", "--all-files", tree],
                         max(1, min(a.runs, 1)), timeout=a.detect_secrets_timeout)
        d = json.loads(out)
        hashes = [x["hashed_secret"] for v in d["results"].values() for x in v]
        found = {by1.get(h, "other:" + h) for h in hashes}
        r.update(target="tree", **score(found, t_tree))
        r["note"] = "no Anthropic rule: generic entropy/keyword plugins; precision over all its findings"
        results.append(r)
    else:
        print("detect-secrets: not given")

    if have(a.rg):
        r, out = measure("ripgrep", [a.rg, "-c", "--no-ignore", "--hidden", "-a", PATTERN, tree], a.runs)
        lines = sum(int(l.rsplit(b":", 1)[1]) for l in out.splitlines() if b":" in l)
        r.update(target="tree", matching_lines=lines,
                 note="floor: read + match the bare pattern; no boundaries, no archives")
        results.append(r)
    else:
        print("ripgrep: not given")

    for r in results:
        size = size_tree if r["target"] == "tree" else size_repo
        r["input_mb"] = round(size / 1e6, 1)
        r["mb_per_s_wall"] = round(size / 1e6 / r["wall_s"], 1)
        r["mb_per_s_cpu"] = round(size / 1e6 / r["cpu_s"], 1) if r["cpu_s"] else None

    print(f"\ncorpus {a.corpus}: tree {size_tree/1e6:.0f} MB, history {size_repo/1e6:.0f} MB of blobs ({packed/1e6:.0f} MB packed); "
          f"{len(t_tree)} Anthropic keys planted in the tree, {len(t_hist)} in history; load {os.getloadavg()[0]:.1f}")
    print("| tool | target | wall s | CPU s | MB/s (wall) | recall | precision | reported |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['tool']} | {r['target']} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} | {r['mb_per_s_wall']} | "
              f"{r.get('recall', '—')} | {r.get('precision', '—')} | {r.get('reported', r.get('matching_lines', '—'))} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
