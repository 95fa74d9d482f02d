#!/usr/bin/env python3
"""Synthetic, seeded corpus for the leak-scanner benchmark.

Writes, under OUT (never inside the repository):
  tree/        a working tree: source files, .env files, notebooks, a minified
               bundle on one line, a binary file, archives (zip, jar, tar.gz,
               zip inside tar.gz), with Anthropic keys planted next to every
               kind of neighbour, keyward keys, and look-alike decoys;
  repo.git/    a bare git repository with hundreds of commits (built with
               `git fast-import`): keys added, moved, deleted, kept on a side
               branch; commit messages with keys;
  truth.json   the ground truth: every planted secret with where it is.

Every key is generated here at run time from the seed: the repository never
contains a key-shaped string. None of them is a live credential.

Usage: gen_corpus.py --out DIR [--seed 42] [--tree-mb 300] [--commits 400]
"""

import argparse
import io
import json
import os
import random
import subprocess
import tarfile
import zipfile
import zlib
import gzip

KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PLACEHOLDER_WORDS = ["example", "placeholder", "redacted", "your-key", "your_key",
                     "yourkey", "replace", "dummy", "xxxxx"]


def plausible(free):
    """The same 'not a placeholder' test keyward applies, so truth is exact."""
    if len(set(free)) < 20:
        return False
    run = longest = asc = 0
    prev = None
    for c in free:
        run = run + 1 if c == prev else 1
        longest = max(longest, run)
        if prev is not None and ord(c) == ord(prev) + 1:
            asc += 1
        prev = c
    low = free.lower()
    return longest < 6 and asc < 20 and not any(w in low for w in PLACEHOLDER_WORDS)


def broken_checksum(key):
    """A keyward key whose last checksum character is changed."""
    return key[:-1] + ("1" if key.endswith("0") else "0")


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.truth = []  # dicts: secret, kind, where, path, context

    def anthropic(self, admin=False):
        while True:
            free = "".join(self.r.choice(KEY_ALPHABET) for _ in range(93))
            # a key must not start or end its free part in a way that changes
            # its own boundaries; any character is fine since the prefix and
            # the AA ending are fixed
            if plausible(free):
                return ("sk-ant-admin01-" if admin else "sk-ant-api03-") + free + "AA"

    def keyward(self, admin=False):
        prefix = "kwa_" if admin else self.r.choice(["kw_dev_", "kw_stg_", "kw_prod_"])
        body = prefix + "".join(self.r.choice(BASE62) for _ in range(40))
        v = zlib.crc32(body.encode())
        sum6 = ""
        for _ in range(6):
            sum6 = BASE62[v % 62] + sum6
            v //= 62
        return body + sum6

    def decoy(self):
        k = self.anthropic()
        free = k[13:106]
        c = self.r.randrange(10)
        return [
            "sk-ant-api03-" + free[:92] + "AA",             # 92 free characters
            "sk-ant-api03-" + free + "xAA",                 # 94
            "sk-ant-api03-" + free + "AB",                  # wrong ending
            "sk-ant-api03-" + "x" * 93 + "AA",              # placeholder
            "sk-ant-api03-" + ("your-key-here-" * 7)[:93] + "AA",
            k + "x",                                        # longer run (right)
            "x" + k,                                        # longer run (left)
            "sk-ant-api04-" + free + "AA",                  # unknown version
            broken_checksum(self.keyward()),
            "sk-ant-api03-" + free[:50],                    # truncated
        ][c]

    def plant(self, kind, where, path, context):
        if kind == "anthropic-api-key":
            s = self.anthropic()
        elif kind == "anthropic-admin-key":
            s = self.anthropic(admin=True)
        elif kind == "keyward-virtual-key":
            s = self.keyward()
        else:
            s = self.keyward(admin=True)
        self.truth.append({"secret": s, "kind": kind, "where": where, "path": path,
                           "context": context})
        return s


# neighbours a key is planted between: (name, left, right)
CONTEXTS = [
    ("double-quote", 'API_KEY = "', '"\n'),
    ("single-quote", "api_key='", "'\n"),
    ("backtick", "const k = `", "`;\n"),
    ("env", "ANTHROPIC_API_KEY=", "\n"),
    ("url-amp", "https://api.example.test/v1?key=", "&model=claude\n"),
    ("brace", "cfg = {key:", "}\n"),
    ("json", '{"api_key": "', '"}\n'),
    ("newline-escape", '"msg": "line\\n', '\\nnext"\n'),
    ("yaml", "  x-api-key: ", "\n"),
    ("header", "-H 'x-api-key: ", "' \\\n"),
    ("paren", "client(", ")\n"),
    ("semicolon", "export K=", ";\n"),
    ("angle", "<key>", "</key>\n"),
    ("equals", "key=", "=\n"),
]


def filler_pool(r, n=20000):
    words = ("client request response model token user message content stream "
             "config handler value index result error retry timeout buffer query "
             "session cache update delete create render state props effect").split()
    pool = []
    for _ in range(n):
        t = r.randrange(8)
        w = r.choices(words, k=4)
        if t == 0:
            line = f"    let {w[0]}_{w[1]} = {w[2]}.{w[3]}({r.randrange(10**6)});"
        elif t == 1:
            line = f"def {w[0]}_{w[1]}(self, {w[2]}):  # {' '.join(w)}"
        elif t == 2:
            line = "sha = '" + "%040x" % r.getrandbits(160) + "'"
        elif t == 3:
            line = "blob: " + "".join(r.choice(KEY_ALPHABET) for _ in range(r.randrange(20, 90)))
        elif t == 4:
            line = f"// TODO({w[0]}): {' '.join(r.choices(words, k=9))}"
        elif t == 5:
            line = f'"{w[0]}": {{"{w[1]}": {r.random():.6f}, "{w[2]}": "{w[3]}"}},'
        elif t == 6:
            line = f"https://{w[0]}.example.test/{w[1]}/{w[2]}?id={r.randrange(10**9)}&x={w[3]}"
        else:
            line = " ".join(r.choices(words, k=12))
        pool.append(line)
    return pool


def text_blob(r, pool, size):
    lines = r.choices(pool, k=max(1, size // 48))
    return "\n".join(lines) + "\n"


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as f:
        f.write(data)


def build_tree(g, out, tree_mb):
    r = g.r
    pool = filler_pool(r)
    tree = os.path.join(out, "tree")
    exts = [".py", ".js", ".ts", ".go", ".rs", ".md", ".json", ".yaml", ".txt", ".java"]
    budget = tree_mb * 1_000_000
    written = 0
    files = []
    # 1. ordinary files, sizes log-uniform 1 KB .. 1 MB
    n = 0
    while written < budget * 0.85:
        size = int(10 ** r.uniform(3, 6))
        d = "/".join(r.choice(["src", "lib", "app", "docs", "tests", "pkg", "cmd", "internal"])
                     for _ in range(r.randrange(1, 4)))
        rel = f"{d}/f{n:05d}{r.choice(exts)}"
        body = text_blob(r, pool, size)
        files.append([rel, body])
        written += len(body)
        n += 1
    # 2. plant keys into random files, with every neighbour, and decoys
    kinds = ["anthropic-api-key"] * 8 + ["anthropic-admin-key"] * 2
    for i in range(200):
        f = r.choice(files)
        name, left, right = CONTEXTS[i % len(CONTEXTS)]
        s = g.plant(r.choice(kinds), "tree", f[0], name)
        cut = r.randrange(len(f[1]))
        cut = f[1].rfind("\n", 0, cut) + 1
        f[1] = f[1][:cut] + left + s + right + f[1][cut:]
    for i in range(30):
        f = r.choice(files)
        s = g.plant(r.choice(["keyward-virtual-key", "keyward-admin-token"]), "tree", f[0], "env")
        f[1] += f"KEYWARD_KEY={s}\n"
    for i in range(300):
        f = r.choice(files)
        f[1] += f'decoy = "{g.decoy()}"\n'
    # a key at the very end of a file, no newline
    f = files[0]
    f[1] += "last=" + g.plant("anthropic-api-key", "tree", f[0], "eof")
    for rel, body in files:
        write(os.path.join(tree, rel), body)
    # 3. hidden and .env files
    for i in range(5):
        rel = f"services/s{i}/.env"
        write(os.path.join(tree, rel),
              f"ANTHROPIC_API_KEY={g.plant('anthropic-api-key', 'tree', rel, 'env')}\n")
    # 4. a minified bundle: one line of ~tree_mb/15 MB with keys inside
    rel = "web/dist/app.min.js"
    parts = []
    size = 0
    target = max(2_000_000, budget // 15)
    while size < target:
        p = "function %s(e,t){return e[%d]+t}" % (r.choice("abcdefgh") * 2, r.randrange(999))
        parts.append(p)
        size += len(p) + 1
    for i in range(8):
        s = g.plant("anthropic-api-key", "tree", rel, "bundle")
        parts.insert(r.randrange(len(parts)), 'var k="' + s + '"')
        parts.insert(r.randrange(len(parts)), "fetch(`/v1?key=" + g.decoy() + "`)")
    write(os.path.join(tree, rel), ";".join(parts))
    # 5. notebooks: keys inside JSON strings with \n escapes
    for i in range(3):
        rel = f"notebooks/analysis{i}.ipynb"
        s = g.plant("anthropic-api-key", "tree", rel, "notebook")
        nb = {"cells": [{"cell_type": "code", "source": [
            "import anthropic\n", f"client = anthropic.Anthropic(api_key=\"{s}\")\n"],
            "outputs": [{"text": "ok\\n" + text_blob(r, pool, 20000)}]}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        write(os.path.join(tree, rel), json.dumps(nb, indent=1))
    # 6. a binary file
    rel = "bin/app.so"
    blob = bytearray(r.getrandbits(8) for _ in range(2_000_000))
    for i in range(3):
        s = g.plant("anthropic-api-key", "tree", rel, "binary")
        pos = r.randrange(len(blob))
        blob[pos:pos] = b"\0" + s.encode() + b"\0"
    write(os.path.join(tree, rel), bytes(blob))
    # 7. archives: zip, jar, tar.gz, and a zip inside a tar.gz
    def member(where_path, ctx):
        s = g.plant("anthropic-api-key", "tree", where_path, ctx)
        return (text_blob(r, pool, 30000) + f'key = "{s}"\n' + text_blob(r, pool, 30000)).encode()

    for rel, kind in [("dist/bundle.zip", "zip"), ("libs/client.jar", "jar")]:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for j in range(3):
                inner = f"res/config{j}.properties"
                z.writestr(inner, member(f"{rel}!{inner}", kind))
        write(os.path.join(tree, rel), buf.getvalue())
    inner_zip = io.BytesIO()
    with zipfile.ZipFile(inner_zip, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("deep/.env", member("release/app.tar.gz!pkg/inner.zip!deep/.env", "nested-zip"))
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w") as t:
        for name, data in [("pkg/inner.zip", inner_zip.getvalue()),
                           ("pkg/settings.py", member("release/app.tar.gz!pkg/settings.py", "tar.gz"))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    write(os.path.join(tree, "release/app.tar.gz"), gzip.compress(tbuf.getvalue(), mtime=0))


def build_history(g, out, commits):
    r = g.r
    pool = filler_pool(r, 5000)
    repo = os.path.join(out, "repo.git")
    subprocess.run(["git", "init", "-q", "--bare", repo], check=True)
    paths = [f"{r.choice(['src', 'lib', 'app', 'conf'])}/m{i:03d}.{r.choice(['py', 'js', 'yaml', 'env'])}"
             for i in range(300)]
    contents = {p: text_blob(r, pool, int(10 ** r.uniform(3.5, 5.3))) for p in paths}
    stream = io.BytesIO()
    mark = 0
    t0 = 1_700_000_000

    def blob(data):
        nonlocal mark
        mark += 1
        b = data.encode()
        stream.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(b)) + b + b"\n")
        return mark

    def commit(branch, i, msg, changes, parent=None):
        nonlocal mark
        mark += 1
        m = msg.encode()
        stream.write(b"commit refs/heads/%s\nmark :%d\n" % (branch.encode(), mark))
        ts = t0 + i * 3600
        stream.write(b"author Dev <dev@example.test> %d +0000\n" % ts)
        stream.write(b"committer Dev <dev@example.test> %d +0000\n" % ts)
        stream.write(b"data %d\n" % len(m) + m + b"\n")
        if parent:
            stream.write(b"from %s\n" % parent.encode())
        for c in changes:
            stream.write(c.encode() + b"\n")
        stream.write(b"\n")
        return mark

    # initial import
    changes = [f"M 100644 :{blob(contents[p])} {p}" for p in paths]
    last = commit("main", 0, "initial import", changes)
    live = {}  # path -> secret planted there
    side_point = None
    for i in range(1, commits):
        changes = []
        msg = f"change {i}"
        for _ in range(r.randrange(1, 4)):
            p = r.choice(paths)
            c = contents[p]
            cut = r.randrange(len(c))
            # an edit: new lines in, a few lines out, size stays about the same
            contents[p] = c[:cut] + text_blob(r, pool, r.randrange(200, 3000)) + c[cut + r.randrange(0, 3000):]
            changes.append(f"M 100644 :{blob(contents[p])} {p}")
        ev = r.randrange(10)
        if ev < 3:  # add a key
            p = r.choice(paths)
            s = g.plant(r.choice(["anthropic-api-key"] * 4 + ["anthropic-admin-key"]), "history", p, "added")
            contents[p] += f'API_KEY = "{s}"\n'
            live[p] = s
            changes.append(f"M 100644 :{blob(contents[p])} {p}")
        elif ev == 3 and live:  # delete a key
            p = r.choice(sorted(live))
            contents[p] = contents[p].replace(f'API_KEY = "{live.pop(p)}"\n', "")
            changes.append(f"M 100644 :{blob(contents[p])} {p}")
        elif ev == 4 and live:  # move a file with a key
            p = r.choice(sorted(live))
            q = p + ".moved"
            paths.remove(p)
            paths.append(q)
            contents[q] = contents.pop(p)
            live[q] = live.pop(p)
            changes.append(f"R {p} {q}")
        elif ev == 5:
            changes.append(f"M 100644 :{blob('KEY=' + g.decoy() + chr(10))} decoys/d{i}.txt")
        if i % 50 == 0:
            s = g.plant("anthropic-api-key", "history-message", "", "commit-message")
            msg = f"rotate credentials, old key was {s}"
        if i == commits // 2:
            side_point = f":{last}"
        last = commit("main", i, msg, changes, parent=f":{last}" if i == 1 else None)
    # a side branch with its own keys
    sp = side_point
    for j in range(20):
        p = f"feature/f{j}.js"
        s = g.plant("anthropic-api-key", "history", p, "branch")
        c = commit("feature", commits + j, f"feature {j}",
                   [f"M 100644 :{blob(text_blob(r, pool, 5000) + 'const k = `' + s + '`;' + chr(10))} {p}"],
                   parent=sp)
        sp = None
    stream.write(b"done\n")
    subprocess.run(["git", "-C", repo, "fast-import", "--quiet", "--done"],
                   input=stream.getvalue(), check=True)
    subprocess.run(["git", "-C", repo, "gc", "-q"], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tree-mb", type=int, default=300)
    ap.add_argument("--commits", type=int, default=400)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    g = Gen(a.seed)
    build_tree(g, a.out, a.tree_mb)
    build_history(g, a.out, a.commits)
    with open(os.path.join(a.out, "truth.json"), "w") as f:
        json.dump({"seed": a.seed, "tree_mb": a.tree_mb, "commits": a.commits,
                   "secrets": g.truth}, f, indent=1)
    print(f"{len(g.truth)} secrets planted in {a.out}")


if __name__ == "__main__":
    main()
