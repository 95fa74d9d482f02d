"""Real documents, not written by this project's generator: the Markdown
files of software packages (READMEs, changelogs, guides), as tool results and
retrieved documents carry them, with their badges, links, code blocks and
install instructions addressed to the reader.

Two sources, kept apart:

* evaluation: the crates that keyward itself depends on, at the versions
  `Cargo.lock` pins, read from Cargo's registry cache
  (`$CARGO_HOME/registry/src/*/NAME-VERSION/`), which any build of keyward
  fills; no stage ever trains on them;
* training: Python packages' source distributions at the versions pinned in
  `docs-requirements.txt`, downloaded by `pip download` into `build/` by
  `prepare.py` (nothing from them is committed).

Each file is cut at blank lines into documents of 300-4,000 characters (at
most `PER_FILE` per file). `inject` puts one passage into a document at its
start, middle or end, in a wrapper Markdown writers use (a paragraph, a block
quote, an HTML comment, a note, a list item): an attack (label 1) or a benign
passage of the same kind (label 0), as `gen_docs.py` does, so that neither the
insertion nor the wrapper gives the label away.

Standard library only (tomllib: Python 3.11+).
"""

import glob
import os
import random
import re
import tarfile
import tomllib
import zipfile

import gen_docs

PER_FILE = 3
MIN_CHARS, MAX_CHARS = 300, 4000
SKIP = re.compile(r"(^|/)(LICENSE|LICENCE|COPYING|NOTICE|AUTHORS|CODE_OF_CONDUCT)[^/]*$", re.I)


def cargo_home():
    return os.environ.get("CARGO_HOME") or os.path.expanduser("~/.cargo")


def crate_files(lock_path):
    """(crate, text) of every Markdown file at the top of, or in docs/ of, each
    registry crate that Cargo.lock pins and the registry cache holds."""
    with open(lock_path, "rb") as f:
        lock = tomllib.load(f)
    roots = sorted(glob.glob(os.path.join(cargo_home(), "registry", "src", "*")))
    out = []
    for p in lock.get("package", []):
        if not p.get("source", "").startswith("registry+"):
            continue
        for root in roots:
            d = os.path.join(root, f"{p['name']}-{p['version']}")
            if not os.path.isdir(d):
                continue
            files = sorted(glob.glob(os.path.join(d, "*.md")) + glob.glob(os.path.join(d, "docs", "*.md")))
            for f in files:
                if not SKIP.search(f):
                    with open(f, encoding="utf-8", errors="replace") as fh:
                        out.append((p["name"], fh.read()))
            break
    return out


def sdist_files(directory):
    """(package, text) of the Markdown and reStructuredText files in each
    source distribution (.tar.gz or .zip) in `directory`."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*"))):
        name = os.path.basename(path)
        members = []
        if name.endswith(".tar.gz"):
            with tarfile.open(path) as t:
                for m in sorted(t.getmembers(), key=lambda m: m.name):
                    if m.isfile() and m.name.endswith((".md", ".rst", ".txt")) and not SKIP.search(m.name):
                        f = t.extractfile(m)
                        if f is not None:
                            members.append(f.read())
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                for m in sorted(z.namelist()):
                    if m.endswith((".md", ".rst", ".txt")) and not SKIP.search(m):
                        members.append(z.read(m))
        for raw in members:
            text = raw.decode("utf-8", errors="replace")
            # requirement lists, file manifests and the like are not prose
            if len(text) >= MIN_CHARS and text.count(" ") * 12 > len(text):
                out.append((name, text))
    return out


def chunks(rng, text):
    """Documents of MIN_CHARS..MAX_CHARS cut from `text` at blank lines."""
    paras = [p for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    docs, cur, target = [], [], rng.randint(MIN_CHARS, MAX_CHARS)
    for p in paras:
        if cur and sum(len(x) + 2 for x in cur) + len(p) > target:
            docs.append(cur)
            cur, target = [], rng.randint(MIN_CHARS, MAX_CHARS)
        cur.append(p[:MAX_CHARS])
    if cur:
        docs.append(cur)
    docs = [d for d in docs if sum(len(x) for x in d) >= MIN_CHARS]
    rng.shuffle(docs)
    return docs[:PER_FILE]


WRAPPERS = [
    lambda s: s,
    lambda s: "> " + s,
    lambda s: "<!-- " + s + " -->",
    lambda s: "**Note:** " + s,
    lambda s: "- " + s,
    lambda s: "_" + s + "_",
]


def inject(rng, paras, attack, held_out):
    """One document with one inserted passage (`gen_docs.place`), in one of
    `WRAPPERS`, between paragraphs or after the last."""
    return gen_docs.place(rng, paras, lambda s: rng.choice(WRAPPERS)(s), attack, held_out, sep="\n\n",
                          after_last=True)


URL = re.compile(r"https?://")


def documents(files, seed, url_paragraphs=False):
    """(source, paragraphs) documents from `files`, seeded. `url_paragraphs`:
    only the paragraphs with two links or more (badges, link references,
    licence and changelog links), each file's joined into one text."""
    rng = random.Random(seed)
    out = []
    for src, text in files:
        if url_paragraphs:
            paras = [p for p in re.split(r"\n\s*\n", text) if len(URL.findall(p)) >= 2]
            text = "\n\n".join(paras)
            if len(text) < MIN_CHARS:
                continue
        for d in chunks(rng, text):
            out.append((src, d))
    return out


def benign_rows(docs):
    return [{"text": "\n\n".join(d), "label": 0, "source": src} for src, d in docs]


def injected_rows(docs, seed, held_out, attack_rate=0.5):
    """Each document once, with an attack (share `attack_rate`) or a benign passage."""
    rng = random.Random(seed)
    gen_docs.HELD = held_out
    try:
        rows = []
        for src, d in docs:
            r = inject(rng, d, rng.random() < attack_rate, held_out)
            r["source"] = src
            rows.append(r)
        return rows
    finally:
        gen_docs.HELD = False


def local_sets(seed, n=200):
    """Benign evaluation sets from documents on any machine with the Rust
    toolchain and Python: the standard library's HTML documentation that
    rustup installs (a slice of the raw HTML, and the page's text), Python's
    standard-library modules (docstrings, comments and code), and Debian's
    /usr/share/doc READMEs and NEWS files. The first 3,000 characters of each
    (or a 3,000-character slice of the HTML), `n` files per set, seeded. What
    they hold depends on the versions installed (here: Rust 1.95.0, CPython
    3.11.7, Debian 12); sets whose files are missing are left out."""
    import html
    import subprocess
    import sysconfig

    rng = random.Random(seed)
    out = {}
    try:
        sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sysroot = ""
    pages = sorted(glob.glob(os.path.join(sysroot, "share/doc/rust/html/std/**/*.html"), recursive=True)) if sysroot else []
    rng.shuffle(pages)
    raw, text = [], []
    for p in pages[:n]:
        with open(p, encoding="utf-8", errors="replace") as f:
            h = f.read()
        body = h[h.find("<main"):] if "<main" in h else h
        start = rng.randint(0, max(0, len(body) - 3000))
        raw.append(body[start:start + 3000])
        t = re.sub(r"<script.*?</script>|<style.*?</style>", " ", body, flags=re.S)
        t = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", t))).strip()
        if len(t) >= MIN_CHARS:
            text.append(t[:3000])
    modules = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    rng.shuffle(modules)
    docs = [p for p in sorted(glob.glob("/usr/share/doc/*/README*") + glob.glob("/usr/share/doc/*/NEWS*"))
            if os.path.isfile(p) and not p.endswith(".gz") and os.path.getsize(p) >= MIN_CHARS]
    rng.shuffle(docs)

    def heads(paths):
        rows = []
        for p in paths[:n]:
            with open(p, encoding="utf-8", errors="replace") as f:
                rows.append(f.read(3000))
        return rows

    for name, texts in (("local_rust_html", raw), ("local_rust_html_text", text),
                        ("local_python_stdlib", heads(modules)), ("local_debian_docs", heads(docs))):
        if texts:
            out[name] = [{"text": t, "label": 0} for t in texts]
    return out
