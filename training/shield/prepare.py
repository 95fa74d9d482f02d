"""Build the training set and the evaluation sets (no row is in both).

Usage: python3 prepare.py --data ../../../shared/data/prompt-injection --out build

Writes
  build/train.jsonl                 training rows
  build/eval/deepset_test.jsonl     deepset `test` split
  build/eval/jackhhao_test.jsonl    jackhhao `test` split
  build/eval/notinject.jsonl        NotInject, all rows (never trained on)
  build/eval/cyberseceval.jsonl     CyberSecEval prompt injection, all rows (never trained on)
  build/eval/docs_heldout.jsonl     generated documents, held-out families and attack pools
  build/eval/docs_seen.jsonl        generated documents, training families, fresh seed
  build/eval/obf_*.jsonl            obfuscated variants (obfuscate.py: typoglycemia, combining
                                    marks, accents, ROT13, backwards, upside down, base64,
                                    base32, typing errors) of the
                                    deepset and jackhhao test attacks, and of NotInject
  build/eval/real_crates*.jsonl     the Markdown of the crates Cargo.lock pins (real_docs.py), plain and
                                    with an inserted passage (from Cargo's registry cache, if filled)
  build/eval/local_*.jsonl          benign documents found on the machine (real_docs.local_sets)
  build/calib.jsonl                 generated documents of two families no stage trains on
                                    (fits the fast+deep combination; never evaluated)
Training rows from deepset/jackhhao are their `train` splits minus any text that
also occurs in an evaluation set.
"""

import argparse
import json
import os
import random
import subprocess
import sys

from obfuscate import MODES, scramble, typos
from prompts import attack_prompt, benign_prompt, benign_request_prompt, benign_trigger_prompt
import fetch_docs
import real_docs

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20241127
# Real rows are few next to generated ones: each counts this much more.
REAL_WEIGHT = {"deepset": 6.0, "jackhhao": 1.0}
# Benign requests to the assistant with trigger words (prompts.py).
REQUESTS = int(os.environ.get("SHIELD_REQUESTS", "1500"))
# Pairs made of deepset `train` rows (see main), and their weight.
PAIRS = int(os.environ.get("SHIELD_PAIRS", "1500"))
PAIR_WEIGHT = float(os.environ.get("SHIELD_PAIR_WEIGHT", "2.0"))
# Real documents (real_docs.py): the pinned source distributions' docs, one
# inserted passage each (half of them attacks), and their weight; 0 leaves
# them out.
REAL_DOCS_WEIGHT = float(os.environ.get("SHIELD_REAL_DOCS_WEIGHT", "1.0"))
# Copies with typing errors (see main; an experiment, off unless
# SHIELD_TYPO_SOURCES names sources, e.g. "deepset,deepset_pair,jackhhao,gen"):
# share of words mistyped, how many generated prompts of each label are
# copied, and the copies' weight relative to their originals.
TYPO_SOURCES = [s for s in os.environ.get("SHIELD_TYPO_SOURCES", "").split(",") if s]
TYPO_P = float(os.environ.get("SHIELD_TYPO_P", "0.35"))
TYPO_GEN = int(os.environ.get("SHIELD_TYPO_GEN", "1000"))
TYPO_WEIGHT = float(os.environ.get("SHIELD_TYPO_WEIGHT", "0.5"))


def held_back(i):
    """Rows that shield_train and shield_deep_train keep back (their `is_val`)."""
    return ((i * 0x9E3779B97F4A7C15) % (1 << 64)) >> 60 < 2


def read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def gen_docs(families, n, seed):
    out = subprocess.run([sys.executable, os.path.join(HERE, "gen_docs.py"), "--families", families,
                          "--n", str(n), "--seed", str(seed)], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def real_doc_rows(directory):
    """Training documents from the pinned source distributions (all of them,
    checked against their hashes: the training set must be the same everywhere)."""
    missing = [f for _, f, sha in fetch_docs.pinned()
               if not os.path.exists(os.path.join(directory, f)) or fetch_docs.sha256_of(os.path.join(directory, f)) != sha]
    if missing:
        sys.exit(f"{len(missing)} pinned docs sources missing or changed in {directory} (e.g. {missing[0]}): "
                 "run training/shield/fetch_docs.py")
    docs = real_docs.documents(real_docs.sdist_files(directory), SEED + 5,
                               url_paragraphs=os.environ.get("SHIELD_REAL_DOCS_URLS") == "1")
    return real_docs.injected_rows(docs, SEED + 6, held_out=False)


def crate_docs(lock):
    """Evaluation sets from the Markdown of the crates Cargo.lock pins, when
    Cargo's registry cache holds them (any build of keyward fills it)."""
    files = real_docs.crate_files(lock)
    if not files:
        print("no crate sources in the Cargo registry cache: real_crates* not written (build keyward first)",
              file=sys.stderr)
        return {}
    docs = real_docs.documents(files, SEED + 7)
    keep = ("text", "label", "source", "position", "attack_kind")
    return {"real_crates": [{k: r[k] for k in ("text", "label", "source")} for r in real_docs.benign_rows(docs)],
            "real_crates_injected": [{k: r[k] for k in keep}
                                     for r in real_docs.injected_rows(docs, SEED + 8, held_out=True)]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "build"))
    ap.add_argument("--docs-src", default=os.path.join(HERE, "build", "docs_src"),
                    help="the source distributions of docs-sources.txt (fetch_docs.py downloads them)")
    ap.add_argument("--lock", default=os.path.join(HERE, "..", "..", "Cargo.lock"),
                    help="Cargo.lock naming the crates whose docs are evaluated on")
    a = ap.parse_args()
    d = a.data
    deepset = read(os.path.join(d, "deepset_prompt_injections.jsonl"))
    jack = read(os.path.join(d, "jackhhao_jailbreak_classification.jsonl"))
    notinject = read(os.path.join(d, "notinject.jsonl"))
    cse = read(os.path.join(d, "cyberseceval_prompt_injection.jsonl"))

    ev = {
        "deepset_test": [{"text": r["text"], "label": r["label"]} for r in deepset if r["split"] == "test"],
        "jackhhao_test": [{"text": r["text"], "label": r["label"]} for r in jack if r["split"] == "test"],
        "notinject": [{"text": r["text"], "label": 0} for r in notinject],
        "cyberseceval": [{"text": r["text"], "label": 1, "injection_type": r.get("injection_type"),
                          "language": r.get("language")} for r in cse],
        "docs_heldout": [{k: r[k] for k in ("text", "label", "family", "position", "attack_kind")}
                         for r in gen_docs("heldout", 3000, SEED + 1)],
        "docs_seen": [{k: r[k] for k in ("text", "label", "family", "position", "attack_kind")}
                      for r in gen_docs("train", 1500, SEED + 2)],
        **crate_docs(a.lock),
        **real_docs.local_sets(SEED + 9),
    }
    held_texts = {r["text"].strip() for rows in ev.values() for r in rows}
    # Obfuscated variants of held-out rows (obfuscate.py: typoglycemia two
    # ways, combining marks two ways, accents, ROT13, backwards two ways,
    # upside down, letter symbols, base64, base32): the test attacks of deepset and jackhhao, and NotInject's
    # benign prompts with trigger words.
    attacks = [r for r in ev["deepset_test"] + ev["jackhhao_test"] if r["label"] == 1]
    for mode in MODES:
        for name, rows in (("attacks", attacks), ("notinject", ev["notinject"])):
            ev[f"obf_{name}_{mode}"] = [
                {"text": scramble(r["text"], mode, random.Random(f"{SEED}:{mode}:{i}")), "label": r["label"]}
                for i, r in enumerate(rows)]

    rng = random.Random(SEED)
    train = []
    for src, rows in [("deepset", deepset), ("jackhhao", jack)]:
        for r in rows:
            if r["split"] == "train" and r["text"].strip() not in held_texts:
                train.append({"text": r["text"], "label": r["label"], "src": src, "weight": REAL_WEIGHT[src]})
    for _ in range(2500):
        train.append({"text": benign_prompt(rng), "label": 0, "src": "gen_benign_prompt"})
    for _ in range(2500):
        train.append({"text": benign_trigger_prompt(rng), "label": 0, "src": "gen_benign_trigger"})
    for _ in range(REQUESTS):
        train.append({"text": benign_request_prompt(rng), "label": 0, "src": "gen_benign_request"})
    for _ in range(2000):
        text, kind = attack_prompt(rng)
        train.append({"text": text, "label": 1, "src": "gen_attack_prompt", "attack_kind": kind})
    for r in gen_docs("train", 5000, SEED):
        train.append({"text": r["text"], "label": r["label"], "src": "gen_doc_" + r["family"],
                      "prefix": r["prefix"], "insert": r["insert"], "suffix": r["suffix"]})
    if REAL_DOCS_WEIGHT > 0:
        for r in real_doc_rows(a.docs_src):
            train.append({"text": r["text"], "label": r["label"], "src": "real_doc", "weight": REAL_DOCS_WEIGHT,
                          "prefix": r["prefix"], "insert": r["insert"], "suffix": r["suffix"]})
    train = [r for r in train if r["text"].strip() not in held_texts or r["src"].startswith("gen_")]
    rng.shuffle(train)
    # deepset's rows often put an injection after an unrelated benign question or
    # topic ("Unemployment young people Europe. Forget everything..."): pairs of
    # its own `train` rows in that shape (benign + benign stays benign). Only
    # rows that the trainers do not keep back (`held_back`) are paired, and the
    # pairs go after them, so the held-back rows stay unseen.
    ds = [r for i, r in enumerate(train) if r["src"] == "deepset" and not held_back(i)]
    ds_benign = [r["text"] for r in ds if r["label"] == 0 and len(r["text"]) < 200]
    pairs = []
    for _ in range(PAIRS):
        second = rng.choice(ds)
        sep = rng.choice([" ", ". ", "\n", "? "])
        text = rng.choice(ds_benign).rstrip("?.! ") + sep + second["text"]
        if text.strip() not in held_texts:
            pairs.append({"text": text, "label": second["label"], "src": "deepset_pair", "weight": PAIR_WEIGHT})
    train += pairs
    # People mistype, attackers too: copies of training rows with typing
    # errors, of both labels alike, so that an attack's misspelt words might
    # still read as the words and a benign typo means nothing (tried, not
    # shipped: training/shield/README.md). Only rows the trainers use are
    # copied (never a held-back one), and the copies go last, so the
    # held-back rows stay the same.
    typo_rng = random.Random(SEED + 11)
    base = [r for i, r in enumerate(train) if not held_back(i)]
    gen = {0: [r for r in base if r["src"].startswith("gen_benign")],
           1: [r for r in base if r["src"] == "gen_attack_prompt"]}
    chosen = [r for r in base if r["src"] in TYPO_SOURCES]
    if "gen" in TYPO_SOURCES:
        for label in (0, 1):
            chosen += typo_rng.sample(gen[label], min(TYPO_GEN, len(gen[label])))
    for r in chosen:
        text = typos(r["text"], typo_rng, TYPO_P)
        if text != r["text"] and text.strip() not in held_texts:
            train.append({"text": text, "label": r["label"], "src": "typo_" + r["src"].split("_")[0],
                          "weight": r.get("weight", 1.0) * TYPO_WEIGHT})
    write(os.path.join(a.out, "train.jsonl"), train)
    calib = [{"text": r["text"], "label": r["label"], "src": "calib_" + r["family"]}
             for r in gen_docs("calib", 1000, SEED + 3)]
    write(os.path.join(a.out, "calib.jsonl"), calib)
    for name, rows in ev.items():
        write(os.path.join(a.out, "eval", name + ".jsonl"), rows)
    counts = {}
    for r in train:
        counts[r["src"]] = counts.get(r["src"], 0) + 1
    print(json.dumps({"train": len(train), "by_source": counts,
                      "eval": {k: len(v) for k, v in ev.items()}}, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
