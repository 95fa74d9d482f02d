"""Download the source distributions named in docs-sources.txt into
build/docs_src/, each checked against its pinned sha256 (a file already there
with the right hash is kept). Their documentation is training data for the
shield (real_docs.py); nothing from them is committed.

Usage: python3 fetch_docs.py [--out build/docs_src]
Standard library only; needs PyPI's simple index (https://pypi.org/simple/).
"""

import argparse
import hashlib
import os
import re
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
INDEX = os.environ.get("SHIELD_DOCS_INDEX", "https://pypi.org/simple")


def pinned():
    with open(os.path.join(HERE, "docs-sources.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                project, filename, sha = line.split()
                yield project, filename, sha


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(project, filename, sha, out):
    path = os.path.join(out, filename)
    if os.path.exists(path) and sha256_of(path) == sha:
        return False
    with urllib.request.urlopen(f"{INDEX}/{project}/", timeout=60) as r:
        page = r.read().decode("utf-8", errors="replace")
    hrefs = [h for h in re.findall(r'href="([^"]+)"', page) if h.split("#")[0].endswith("/" + filename)]
    if not hrefs:
        raise SystemExit(f"{filename}: not on {INDEX}/{project}/")
    with urllib.request.urlopen(urllib.request.urljoin(f"{INDEX}/{project}/", hrefs[0].split("#")[0]), timeout=300) as r:
        data = r.read()
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise SystemExit(f"{filename}: sha256 {got}, pinned {sha}; not written")
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.replace(path + ".part", path)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "build", "docs_src"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    files = list(pinned())
    got = sum(fetch(project, filename, sha, a.out) for project, filename, sha in files)
    print(f"docs sources: {got} downloaded, all {len(files)} checked in {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
