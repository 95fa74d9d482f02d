"""Train the deep stage's contextual student: a small transformer encoder over
windows of the distilled MiniLM token vectors.

Usage (student.sh runs it):
  python3 student.py --static build/static.kwst --dump build/student \
      --out build/student.kwsd [--golden-ids golden_ids.jsonl]

Inputs come from the Rust trainer, so tokenisation, normalisation and window
labels cannot drift from serving:
  build/student/train.txt  one training window per line: label weight id...
  build/student/rows.txt   held-back rows and calibration documents (never
                           trained on): "R index label group windows", then one
                           line of ids per window
(`KWSD_DUMP=build/student shield_deep_train ...`).

Model (crates/detect/src/shield/encoder.rs is the serving copy):
  x_i = P·static[id_i] + b + pos_i          static: the frozen 256-d table of distill.py
  pre-LN transformer layers (multi-head self-attention over the window, ReLU FFN)
  final LN, [mean ‖ max] over the window's tokens, MLP head (ReLU) -> logit
Loss: binary cross-entropy with the rows' weights, the classes given equal
total weight (as shield_deep_train does for the static head). AdamW, linear
warm-up and decay, seeded; one thread by default, so the same inputs give the
same weights.

Distillation (teacher.py; tried, not shipped): --soft mixes in a soft-target
loss on the windows the teacher scored, (1 - alpha)·BCE(label) +
alpha·T²·BCE(z/T, σ(teacher/T)); --aug adds teacher-labelled windows trained
with the soft loss alone (weight --aug-weight). --group-weight multiplies the
weights of some source groups' windows. Without these flags nothing changes.

Output: a version 2 `*.kwsd` file (the projection folded into an int8 table of
vocab x d with a scale per row) whose calibration is a placeholder; the Rust
trainer (KWSD_STUDENT=...) fits the combination with the fast stage.
Prints the student's figures per epoch on the held-back rows (AUC per group,
recall at 5 % FPR on the calibration documents): the only figures used to
choose between variants.
"""

import argparse
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 0x6B6579776172


def read_kwst(path):
    b = open(path, "rb").read()
    assert b[:4] == b"KWST", "not a KWST file"
    _version, vocab, dims = struct.unpack_from("<III", b, 4)
    at = 16
    scales = np.frombuffer(b, "<f4", vocab, at)
    at += 4 * vocab
    table = np.frombuffer(b, "i1", vocab * dims, at).reshape(vocab, dims)
    at += vocab * dims
    (n,) = struct.unpack_from("<I", b, at)
    vocab_text = b[at + 4 : at + 4 + n]
    return table.astype(np.float32) * scales[:, None], vocab_text


def read_train(path, window):
    """Labels, weights, padded ids, and each kept window's line number in train.txt."""
    labels, weights, ids, lines = [], [], [], []
    with open(path) as f:
        for n, line in enumerate(f):
            p = line.split()
            if len(p) < 3:  # an empty window carries nothing to learn from
                continue
            labels.append(int(p[0]))
            weights.append(float(p[1]))
            ids.append([int(t) for t in p[2 : 2 + window]])
            lines.append(n)
    return np.array(labels, np.float32), np.array(weights, np.float32), pad(ids, window), np.array(lines)


def read_rows(path, window):
    """Rows as (label, group, first window index, window count) plus all windows."""
    rows, wins = [], []
    with open(path) as f:
        lines = iter(f)
        for line in lines:
            _, _idx, label, group, k = line.split()
            rows.append((int(label), group, len(wins), int(k)))
            for _ in range(int(k)):
                wins.append([int(t) for t in next(lines).split()][:window])
    return rows, wins


def pad(ids, window):
    a = np.zeros((len(ids), window), np.int64)
    m = np.zeros((len(ids), window), bool)
    for i, r in enumerate(ids):
        a[i, : len(r)] = r
        m[i, : len(r)] = True
    return a, m


class Layer(nn.Module):
    def __init__(self, d, heads, ffn, dropout):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.f1 = nn.Linear(d, ffn)
        self.f2 = nn.Linear(ffn, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        bsz, n, d = x.shape
        dh = d // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(bsz, n, self.heads, dh).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-1, -2) / math.sqrt(dh)
        s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
        ctx = (s.softmax(-1) @ v).transpose(1, 2).reshape(bsz, n, d)
        x = x + self.drop(self.o(ctx))
        return x + self.drop(self.f2(F.relu(self.f1(self.ln2(x)))))


class Student(nn.Module):
    def __init__(self, static, d, heads, ffn, layers, window, hidden, dropout):
        super().__init__()
        self.register_buffer("static", torch.from_numpy(static))
        self.table = None  # the folded, quantised table once exported
        self.proj = nn.Linear(static.shape[1], d)
        # --train-table: a learned per-token correction of the projected table,
        # folded into the same int8 table (no cost at run time)
        self.resid = None
        self.pos = nn.Parameter(torch.randn(window, d) * 0.02)
        self.layers = nn.ModuleList(Layer(d, heads, ffn, dropout) for _ in range(layers))
        self.lnf = nn.LayerNorm(d, eps=1e-5)
        self.h1 = nn.Linear(2 * d, hidden)
        self.h2 = nn.Linear(hidden, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, ids, mask):
        n = ids.shape[1]
        if self.table is not None:
            x = self.table[ids]
        else:
            x = self.proj(self.static[ids])
            if self.resid is not None:
                x = x + self.resid(ids)
        x = self.drop(x + self.pos[:n])
        for layer in self.layers:
            x = layer(x, mask)
        x = self.lnf(x)
        m = mask[..., None].float()
        mean = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        mx = x.masked_fill(~mask[..., None], float("-inf")).amax(1)
        mx = torch.where(mask.any(1, keepdim=True), mx, torch.zeros_like(mx))
        return self.h2(F.relu(self.h1(torch.cat([mean, mx], -1)))).squeeze(-1)


def fold(model):
    """The projected table, quantised as the Rust side stores it."""
    with torch.no_grad():
        e = model.proj(model.static)
        if model.resid is not None:
            e = e + model.resid.weight
        e = e.numpy()
    scale = np.abs(e).max(1) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.round(e / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def window_logits(model, ids, mask, batch=1024):
    out = []
    with torch.no_grad():
        for s in range(0, len(ids), batch):
            out.append(model(torch.from_numpy(ids[s : s + batch]), torch.from_numpy(mask[s : s + batch])))
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="stable")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def recall_at_fpr(scores, labels, fpr=0.05):
    neg = np.sort(scores[labels == 0])[::-1]
    if len(neg) == 0:
        return float("nan")
    t = neg[int(math.floor(fpr * len(neg)))]
    return float((scores[labels == 1] > t).mean())


def evaluate(model, rows, rids, rmask):
    """Per group: AUC of the row score (highest window logit); recall at 5 % FPR on calib docs.
    Runs in eval mode (no dropout) and leaves the model in the mode it found."""
    was_training = model.training
    model.eval()
    wl = window_logits(model, rids, rmask)
    empty = ~rmask.any(1)
    if empty.any():  # an empty window: zeros pooled, as in Rust
        wl[empty] = model_empty(model)
    score = np.array([wl[s : s + k].max() if k else -1e9 for (_, _, s, k) in rows])
    label = np.array([r[0] for r in rows])
    groups = sorted({r[1] for r in rows})
    out = {}
    for g in groups:
        sel = np.array([r[1] == g for r in rows])
        out[g] = auc(score[sel], label[sel])
    cal = np.array([r[1] == "calib_doc" for r in rows])
    out["calib_doc_r5"] = recall_at_fpr(score[cal], label[cal]) if cal.any() else float("nan")
    out["all"] = auc(score, label)
    model.train(was_training)
    return out, score


def model_empty(model):
    with torch.no_grad():
        d = model.lnf.weight.shape[0]
        return float(model.h2(F.relu(model.h1(torch.zeros(1, 2 * d)))).item())


def export(model, path, args, vocab_text):
    q, scale = fold(model)
    d = args.dims
    out = bytearray(b"KWSD")
    out += struct.pack("<6I", 2, q.shape[0], d, args.window, args.stride, args.hidden)
    # b2, then a placeholder calibration (deep logit alone) that shield_deep_train replaces
    out += struct.pack("<7f", float(model.h2.bias.item()), 0.0, 1.0, 0.0, 0.5, 0.0, 0.0)

    def f32(t):
        a = t.detach().numpy() if isinstance(t, torch.Tensor) else t
        out.extend(np.ascontiguousarray(a, dtype="<f4").tobytes())

    f32(np.zeros(2 * d))  # mu
    f32(np.ones(2 * d))  # sd
    f32(model.h1.weight)  # hidden x 2d, row-major
    f32(model.h1.bias)
    f32(model.h2.weight.reshape(-1))
    out += struct.pack("<3I", len(model.layers), args.heads, args.ffn)
    f32(model.pos)
    for l in model.layers:
        f32(l.ln1.weight), f32(l.ln1.bias)
        f32(l.qkv.weight.T), f32(l.qkv.bias)  # input-major
        f32(l.o.weight.T), f32(l.o.bias)
        f32(l.ln2.weight), f32(l.ln2.bias)
        f32(l.f1.weight.T), f32(l.f1.bias)
        f32(l.f2.weight.T), f32(l.f2.bias)
    f32(model.lnf.weight), f32(model.lnf.bias)
    f32(scale)
    out += q.tobytes()
    out += struct.pack("<I", len(vocab_text)) + vocab_text
    open(path, "wb").write(out)
    return q, scale


def token_windows(n, window, stride):
    if n <= window:
        return [(0, n)]
    out, s = [], 0
    while s + window < n:
        out.append((s, s + window))
        s += stride
    out.append((n - window, n))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--static", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--golden-ids", help="JSON arrays of token ids (shield_tokenize): print their logits")
    ap.add_argument("--dims", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=128)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--window", type=int, default=48)
    ap.add_argument("--stride", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--soft", help="teacher.py's train_logits.npy: distil from its soft targets")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of the soft-target loss")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--aug", help="teacher.py augment's aug.txt (aug_logits.npy beside it)")
    ap.add_argument("--aug-weight", type=float, default=1.0)
    ap.add_argument("--train-table", action="store_true", help="learn a per-token correction of the table")
    ap.add_argument("--group-weight", help="GROUP=FACTOR,...: multiply the weights of those groups' windows")
    ap.add_argument("--seed", type=int, default=SEED, help="initialisation and shuffling (to measure seed variance)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    np.random.seed(args.seed & 0xFFFFFFFF)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    static, vocab_text = read_kwst(args.static)
    y, w, (ids, mask), lines = read_train(os.path.join(args.dump, "train.txt"), args.window)
    # soft targets (teacher.py): the teacher's probability where it scored the
    # window, the hard label elsewhere; the loss mixes them with --alpha
    soft = y.copy()
    if args.soft:
        tl = np.load(args.soft)[lines]
        have = ~np.isnan(tl)
        soft[have] = 1.0 / (1.0 + np.exp(-tl[have] / args.temperature))
        print(f"soft targets on {int(have.sum())} windows (alpha {args.alpha}, temperature {args.temperature})",
              file=sys.stderr)
    rows, rwins = read_rows(os.path.join(args.dump, "rows.txt"), args.window)
    rids, rmask = pad(rwins, args.window)
    if args.group_weight:  # e.g. deepset=2,deepset_pair=2: those rows' windows count more
        groups = np.array(open(os.path.join(args.dump, "train_groups.txt")).read().split("\n"))[lines]
        for gw in args.group_weight.split(","):
            g, f = gw.split("=")
            w = np.where(groups == g, w * float(f), w).astype(np.float32)
    alpha = np.full(len(y), args.alpha if args.soft else 0.0, np.float32)
    if args.aug:  # teacher.py augment: extra windows with the teacher's labels only (soft loss alone)
        ay, aw, (aids, amask), alines = read_train(args.aug, args.window)
        atl = np.load(os.path.join(os.path.dirname(args.aug), "aug_logits.npy"))[alines]
        ids, mask = np.concatenate([ids, aids]), np.concatenate([mask, amask])
        y, w = np.concatenate([y, ay]), np.concatenate([w, aw * args.aug_weight]).astype(np.float32)
        soft = np.concatenate([soft, 1.0 / (1.0 + np.exp(-atl / args.temperature))]).astype(np.float32)
        alpha = np.concatenate([alpha, np.ones(len(ay), np.float32)])
        print(f"augmented windows {len(ay)} (teacher-positive {int(ay.sum())})", file=sys.stderr)
    # class balance: equal total weight, then mean weight 1
    wp, wn = w[y == 1].sum(), w[y == 0].sum()
    w = w * np.where(y == 1, (wp + wn) / (2 * wp), (wp + wn) / (2 * wn))
    w = (w / w.mean()).astype(np.float32)
    print(f"windows {len(y)} positive {int(y.sum())}; held-back rows {len(rows)} ({len(rwins)} windows); "
          f"read in {time.time() - t0:.0f}s", file=sys.stderr)

    model = Student(static, args.dims, args.heads, args.ffn, args.layers, args.window, args.hidden, args.dropout)
    if args.train_table:
        model.resid = nn.Embedding(static.shape[0], args.dims)
        nn.init.zeros_(model.resid.weight)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=args.wd)
    steps = args.epochs * math.ceil(len(y) / args.batch)
    warm = max(1, steps // 50)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min((t + 1) / warm, max(0.0, (steps - t) / max(1, steps - warm)))
    )
    gen = torch.Generator().manual_seed(args.seed)
    tid, tmask, ty, tw, ts, ta = map(torch.from_numpy, (ids, mask, y, w, soft.astype(np.float32), alpha))
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        total, t1 = 0.0, time.time()
        for s in range(0, len(y), args.batch):
            b = order[s : s + args.batch]
            z = model(tid[b], tmask[b])
            loss = F.binary_cross_entropy_with_logits(z, ty[b], reduction="none")
            if args.soft or args.aug:
                # scaled by T^2 so that the soft gradients keep their size (Hinton et al.)
                st = F.binary_cross_entropy_with_logits(z / args.temperature, ts[b], reduction="none") \
                    * args.temperature**2
                loss = (1 - ta[b]) * loss + ta[b] * st
            loss = (loss * tw[b]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        res, _ = evaluate(model, rows, rids, rmask)
        figs = " ".join(f"{k}={v:.3f}" for k, v in res.items())
        print(f"epoch {epoch}: loss {total / len(y):.4f} ({time.time() - t1:.0f}s); held back: {figs}", file=sys.stderr)

    model.eval()
    q, scale = export(model, args.out, args, vocab_text)
    # from here on the model reads the folded int8 table, as Rust does
    model.table = torch.from_numpy(q.astype(np.float32) * scale[:, None])
    res, _ = evaluate(model, rows, rids, rmask)
    figs = " ".join(f"{k}={v:.3f}" for k, v in res.items())
    print(f"exported {args.out} ({os.path.getsize(args.out)} bytes); quantised table, held back: {figs}", file=sys.stderr)
    if args.golden_ids:
        import json

        for line in open(args.golden_ids):
            toks = json.loads(line)
            wins = token_windows(len(toks), args.window, args.stride)
            a, m = pad([toks[s:e] for s, e in wins], args.window)
            wl = window_logits(model, a, m)
            if not m.any():
                wl = np.array([model_empty(model)])
            print(f"golden {float(wl.max()):.6f} {len(toks)} tokens {len(wins)} windows")
    print(f"total {time.time() - t0:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
