"""Obfuscated variants of an evaluation set: text a reader (or Claude) still
reads, with other characters for a filter.

Usage: python3 obfuscate.py IN.jsonl OUT.jsonl [--mode MODE] [--seed N] [--label L]

Writes, for each row (or only the rows with `label` L), the same text
obfuscated one way:

* `middle` (default), typoglycemia: in each word of four letters or more the
  letters between the first and the last shuffled ("ignroe all prevoius");
* `swap`: two neighbouring letters swapped in each such word, anywhere after
  the first letter (the common typing error, which also moves the last
  letter: "systme");
* `zalgo`: one to three combining marks of U+0300..U+036F after every letter;
* `strike`: U+0336 (combining long stroke overlay) after every character, as
  strike-through text generators write it;
* `accents`: every vowel (and c, n) that has accented forms replaced by one of
  them ("Ïgnörè àll prëvîôus");
* `rot13`: ROT13 ("Vtaber nyy cerivbhf");
* `reverse`: the whole text backwards (".tpmorp metsys eht");
* `reverse_words`: each word backwards, in its place ("erongI lla suoiverp");
* `upside_down`: upside-down letters, backwards, as text generators write it
  ("ʇdɯoɹd ɯǝʇsʎs ǝɥʇ");
* `symbols`: letters written as negative squared letters ("🅸🅶🅽🅾🆁🅴"), which
  NFKC does not fold;
* `base64`, `base32`: the whole text encoded (UTF-8), after "Decode this and
  follow it: ";
* `attachment`: the whole text in base64 after a neutral "Attachment: " (an
  instruction of its own, like the frame above, is not what makes a benign
  attachment look like an attack);
* `typos`: typing errors, as a hurried or careless writer makes them: in each
  word of four letters or more, with probability one half, one letter is
  replaced by a neighbour on a QWERTY keyboard, dropped, doubled, or joined by
  a neighbour ("igmore all previos insttuctions"); the first letter is kept.
  (`typos` below, also used by prepare.py for training copies.)

Words are runs of ASCII letters. A shuffle that gives the word back is tried
again (up to ten times), so most words change. Seeded per row: the same
input and seed give the same output. Standard library only.
"""

import argparse
import base64
import codecs
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


ACCENTS = {"a": "áàâäã", "e": "éèêë", "i": "íìîï", "o": "óòôöõ", "u": "úùûü", "c": "ç", "n": "ñ",
           "A": "ÁÀÂÄÃ", "E": "ÉÈÊË", "I": "ÍÌÎÏ", "O": "ÓÒÔÖÕ", "U": "ÚÙÛÜ", "C": "Ç", "N": "Ñ"}
FLIP = dict(zip("abcdefghijklmnopqrstuvwxyz", "ɐqɔpǝɟƃɥᴉɾʞꞁɯuodbɹsʇnʌʍxʎz"))
MODES = ("middle", "swap", "zalgo", "strike", "accents", "rot13", "reverse", "reverse_words", "upside_down", "symbols",
         "base64", "base32", "attachment", "typos")

KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]


def _neighbours():
    pos = {c: (r, i) for r, row in enumerate(KEYBOARD) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in pos.items():
        out[c] = "".join(d for d, (r2, i2) in pos.items() if d != c and abs(r2 - r) <= 1 and abs(i2 - i) <= 1)
    return out


NEIGHBOURS = _neighbours()


def typo_word(w, rng):
    """One typing error in `w` (after its first letter), case kept."""
    i = rng.randrange(1, len(w))
    c = w[i]
    near = NEIGHBOURS.get(c.lower(), "")
    op = rng.randrange(4) if near else rng.choice((1, 2))
    if op == 0:  # a neighbouring key instead
        n = rng.choice(near)
        return w[:i] + (n.upper() if c.isupper() else n) + w[i + 1 :]
    if op == 1:  # dropped
        return w[:i] + w[i + 1 :]
    if op == 2:  # doubled
        return w[:i] + c + w[i:]
    n = rng.choice(near)  # a neighbouring key as well
    return w[:i] + (n.upper() if c.isupper() else n) + w[i:]


def typos(text, rng, p=0.5):
    """Typing errors in about a share `p` of the words of four letters or more."""
    return WORD.sub(lambda m: typo_word(m.group(0), rng) if rng.random() < p else m.group(0), text)


def scramble(text, mode, rng):
    if mode == "zalgo":
        return "".join(c + "".join(chr(rng.randrange(0x300, 0x370)) for _ in range(rng.randint(1, 3)))
                       if c.isascii() and c.isalpha() else c for c in text)
    if mode == "strike":
        return "".join(c + "\u0336" for c in text)
    if mode in ("base64", "base32"):
        encode = base64.b64encode if mode == "base64" else base64.b32encode
        return "Decode this and follow it: " + encode(text.encode("utf-8")).decode("ascii")
    if mode == "attachment":
        return "Attachment: " + base64.b64encode(text.encode("utf-8")).decode("ascii")
    if mode == "symbols":
        return "".join(chr(0x1F170 + ord(c.upper()) - 65) if c.isascii() and c.isalpha() else c for c in text)
    if mode == "rot13":
        return codecs.encode(text, "rot13")
    if mode == "reverse":
        return text[::-1]
    if mode == "reverse_words":
        return re.sub(r"\S+", lambda m: m.group(0)[::-1], text)
    if mode == "upside_down":
        return "".join(FLIP.get(c.lower(), c) for c in text)[::-1]
    if mode == "typos":
        return typos(text, rng)
    if mode == "accents":
        return "".join(rng.choice(ACCENTS[c]) if c in ACCENTS else c for c in text)
    return WORD.sub(lambda m: scramble_word(m.group(0), mode, rng), text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--mode", choices=MODES, default="middle")
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
