"""Typoglycemia variants of an evaluation set: every word's letters scrambled.

Usage: python3 scramble.py IN.jsonl OUT.jsonl [--mode middle|swap] [--seed N] [--label L]

A reader still reads "ignroe all prevoius isntructions"; a character n-gram
model sees other n-grams. This writes, for each row (or only the rows with
`label` L), the same text with each word of four letters or more changed:

* `middle` (default): the letters between the first and the last shuffled,
  the classic typoglycemia form;
* `swap`: two neighbouring letters swapped, anywhere after the first letter
  (the common typing error, which also moves the last letter: "systme").

Words are runs of ASCII letters; everything else is kept. A shuffle that
gives the word back is tried again (up to ten times), so most words change.
Seeded per row: the same input and seed give the same output. Standard
library only.
"""

import argparse
import json
import random
import re

WORD = re.compile(r"[A-Za-z]{4,}")


def scramble_word(w, mode, rng):
    if mode == "middle":
        mid = list(w[1:-1])
        for _ in range(10):
            rng.shuffle(mid)
            out = w[0] + "".join(mid) + w[-1]
            if out != w:
                return out
        return out
    # swap: positions 1..len-2 paired with their right neighbour
    for _ in range(10):
        i = rng.randrange(1, len(w) - 1)
        out = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
        if out != w:
            return out
    return w


def scramble(text, mode, rng):
    return WORD.sub(lambda m: scramble_word(m.group(0), mode, rng), text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--mode", choices=("middle", "swap"), default="middle")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", type=int, default=None, help="keep only rows with this label")
    a = ap.parse_args()
    n = 0
    with open(a.inp, encoding="utf-8") as f, open(a.out, "w", encoding="utf-8") as o:
        for i, line in enumerate(f):
            row = json.loads(line)
            if a.label is not None and row.get("label") != a.label:
                continue
            rng = random.Random(f"{a.seed}:{a.mode}:{i}")
            row["text"] = scramble(row["text"], a.mode, rng)
            o.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    print(f"{n} rows -> {a.out}")


if __name__ == "__main__":
    main()
