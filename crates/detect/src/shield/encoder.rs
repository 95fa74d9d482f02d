//! The contextual student of the deep stage: a small pre-LN transformer
//! encoder over one window of token vectors (weights file version 2).
//!
//! ```text
//! window of n token ids ─► x_i = table[id_i] + pos_i            (n × d)
//!   per layer:  x += Wo·MultiHeadAttention(LN1(x))               (all n tokens see each other)
//!               x += W2·ReLU(W1·LN2(x))
//! LN(x) ─► [mean ‖ max] over the n tokens (2d) ─► the MLP head of [`Head`](super::deep::Head)
//! ```
//!
//! Unlike the static vectors, a token's output depends on the other tokens
//! of its window ("follow these steps" in a recipe versus "you, the
//! assistant, must now..."). The table holds the static MiniLM vectors
//! already projected to the encoder's width `d` (the projection is folded in
//! by `training/shield/student.py`), int8 with a scale per row.
//!
//! Weight matrices are stored input-major (`[input][output]`), so that each
//! product is a sum of scaled rows, which the compiler vectorises without
//! reordering any floating-point sum.
//!
//! File layout of the encoder block (little-endian, after the head's `w2`):
//! ```text
//! u32 layers, heads, ffn
//! f32 pos x window*d
//! per layer: ln1_g, ln1_b (d each), wqkv (d x 3d), bqkv (3d), wo (d x d), bo (d),
//!            ln2_g, ln2_b (d each), w1 (d x ffn), b1 (ffn), w2 (ffn x d), b2 (d)
//! f32 lnf_g, lnf_b (d each)
//! ```

use super::deep::{put_f32s, put_u32, DeepError, Reader, StaticEmbeddings};

/// Bounds on an encoder's shape that a weights file may claim.
const MAX_LAYERS: usize = 8;
const MAX_WINDOW: usize = 1024;
const MAX_FFN: usize = 8192;
const LN_EPS: f32 = 1e-5;

/// One pre-LN transformer layer.
#[derive(Clone, PartialEq)]
pub struct Layer {
    pub ln1_g: Vec<f32>,
    pub ln1_b: Vec<f32>,
    /// `d × 3d`: the query, key and value projections side by side.
    pub wqkv: Vec<f32>,
    pub bqkv: Vec<f32>,
    pub wo: Vec<f32>,
    pub bo: Vec<f32>,
    pub ln2_g: Vec<f32>,
    pub ln2_b: Vec<f32>,
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: Vec<f32>,
}

/// The encoder: position vectors, layers, a final layer norm.
#[derive(Clone, PartialEq)]
pub struct Encoder {
    pub dims: usize,
    pub heads: usize,
    pub ffn: usize,
    /// The longest window the position vectors cover.
    pub window: usize,
    /// `window × dims`.
    pub pos: Vec<f32>,
    pub layers: Vec<Layer>,
    pub lnf_g: Vec<f32>,
    pub lnf_b: Vec<f32>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("dims", &self.dims)
            .field("heads", &self.heads)
            .field("ffn", &self.ffn)
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

/// Buffers reused from window to window (one set per scoring call).
#[derive(Debug, Default)]
pub struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    kt: Vec<f32>,
    f: Vec<f32>,
    p: Vec<f32>,
}

/// `out[t] = b + x[t] · w` for `n` rows; `w` is `din × dout`, input-major.
fn linear(x: &[f32], w: &[f32], b: &[f32], din: usize, dout: usize, out: &mut Vec<f32>) {
    let n = x.len() / din;
    out.clear();
    out.resize(n * dout, 0.0);
    for (xr, o) in x.chunks_exact(din).zip(out.chunks_exact_mut(dout)) {
        o.copy_from_slice(b);
        for (&xv, wr) in xr.iter().zip(w.chunks_exact(dout)) {
            for (oj, &wj) in o.iter_mut().zip(wr) {
                *oj += xv * wj;
            }
        }
    }
}

/// Layer norm of each `d`-long row of `x` into `out`.
fn layer_norm(x: &[f32], g: &[f32], b: &[f32], d: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(x.len(), 0.0);
    for (xr, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + LN_EPS).sqrt();
        for (((oj, &v), &gj), &bj) in o.iter_mut().zip(xr).zip(g).zip(b) {
            *oj = (v - mean) * inv * gj + bj;
        }
    }
}

impl Encoder {
    pub(super) fn read(r: &mut Reader<'_>, dims: usize, window: usize) -> Result<Self, DeepError> {
        let (layers, heads, ffn) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        if layers == 0 || layers > MAX_LAYERS || heads == 0 || !dims.is_multiple_of(heads) || ffn == 0 || ffn > MAX_FFN
        {
            return Err(DeepError::Shape("encoder layers, heads or feed-forward width out of range"));
        }
        if window > MAX_WINDOW {
            return Err(DeepError::Shape("encoder window out of range"));
        }
        let d = dims;
        let pos = r.f32s(window * d)?;
        let mut ls = Vec::with_capacity(layers);
        for _ in 0..layers {
            ls.push(Layer {
                ln1_g: r.f32s(d)?,
                ln1_b: r.f32s(d)?,
                wqkv: r.f32s(d * 3 * d)?,
                bqkv: r.f32s(3 * d)?,
                wo: r.f32s(d * d)?,
                bo: r.f32s(d)?,
                ln2_g: r.f32s(d)?,
                ln2_b: r.f32s(d)?,
                w1: r.f32s(d * ffn)?,
                b1: r.f32s(ffn)?,
                w2: r.f32s(ffn * d)?,
                b2: r.f32s(d)?,
            });
        }
        let (lnf_g, lnf_b) = (r.f32s(d)?, r.f32s(d)?);
        Ok(Encoder { dims, heads, ffn, window, pos, layers: ls, lnf_g, lnf_b })
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        for v in [self.layers.len(), self.heads, self.ffn] {
            put_u32(out, v as u32);
        }
        put_f32s(out, &self.pos);
        for l in &self.layers {
            for v in
                [&l.ln1_g, &l.ln1_b, &l.wqkv, &l.bqkv, &l.wo, &l.bo, &l.ln2_g, &l.ln2_b, &l.w1, &l.b1, &l.w2, &l.b2]
            {
                put_f32s(out, v);
            }
        }
        put_f32s(out, &self.lnf_g);
        put_f32s(out, &self.lnf_b);
    }

    /// Multiply-adds for one window of `n` tokens (for the speed budget).
    pub fn cost(&self, n: usize) -> usize {
        let d = self.dims;
        self.layers.len() * n * (4 * d * d + 2 * d * self.ffn + 2 * n * d)
    }

    /// Encode the tokens `ids` (at most `window` of them; any beyond are
    /// ignored) and write `[mean ‖ max]` of the outputs to `pooled` (`2 × dims`;
    /// zeros for no tokens).
    pub fn pool(&self, emb: &StaticEmbeddings, ids: &[u32], s: &mut Scratch, pooled: &mut [f32]) {
        let d = self.dims;
        pooled.fill(0.0);
        let ids = &ids[..ids.len().min(self.window)];
        let n = ids.len();
        if n == 0 || emb.dims != d {
            return;
        }
        s.x.clear();
        s.x.extend_from_slice(&self.pos[..n * d]);
        for (&id, row) in ids.iter().zip(s.x.chunks_exact_mut(d)) {
            emb.add_row(id, row);
        }
        for l in &self.layers {
            self.attention(l, n, s);
            // feed-forward block
            layer_norm(&s.x, &l.ln2_g, &l.ln2_b, d, &mut s.h);
            linear(&s.h, &l.w1, &l.b1, d, self.ffn, &mut s.f);
            s.f.iter_mut().for_each(|v| *v = v.max(0.0));
            linear(&s.f, &l.w2, &l.b2, self.ffn, d, &mut s.h);
            s.x.iter_mut().zip(&s.h).for_each(|(x, h)| *x += h);
        }
        layer_norm(&s.x, &self.lnf_g, &self.lnf_b, d, &mut s.h);
        let (mean, max) = pooled.split_at_mut(d);
        max.fill(f32::NEG_INFINITY);
        for row in s.h.chunks_exact(d) {
            for ((m, x), &v) in mean.iter_mut().zip(max.iter_mut()).zip(row) {
                *m += v;
                *x = x.max(v);
            }
        }
        let k = 1.0 / n as f32;
        mean.iter_mut().for_each(|m| *m *= k);
    }

    /// `x += Wo · attention(LN1(x))` over all `n` tokens.
    fn attention(&self, l: &Layer, n: usize, s: &mut Scratch) {
        let d = self.dims;
        let dh = d / self.heads;
        let scale = 1.0 / (dh as f32).sqrt();
        layer_norm(&s.x, &l.ln1_g, &l.ln1_b, d, &mut s.h);
        linear(&s.h, &l.wqkv, &l.bqkv, d, 3 * d, &mut s.qkv);
        s.ctx.clear();
        s.ctx.resize(n * d, 0.0);
        s.p.clear();
        s.p.resize(n, 0.0);
        // keys transposed (`kt[(h·dh + c)·n + j]`), so that a query's scores
        // against all keys are sums of scaled rows, which vectorise
        s.kt.clear();
        s.kt.resize(d * n, 0.0);
        for (j, t) in s.qkv.chunks_exact(3 * d).enumerate() {
            for (c, &k) in t[d..2 * d].iter().enumerate() {
                s.kt[c * n + j] = k;
            }
        }
        for h in 0..self.heads {
            let kt = &s.kt[h * dh * n..(h + 1) * dh * n];
            for i in 0..n {
                let q = &s.qkv[i * 3 * d + h * dh..i * 3 * d + (h + 1) * dh];
                s.p.fill(0.0);
                for (&qc, krow) in q.iter().zip(kt.chunks_exact(n)) {
                    for (p, &k) in s.p.iter_mut().zip(krow) {
                        *p += qc * k;
                    }
                }
                let top = s.p.iter().fold(f32::NEG_INFINITY, |m, &p| m.max(p * scale));
                let mut total = 0.0;
                for p in s.p.iter_mut() {
                    *p = (*p * scale - top).exp();
                    total += *p;
                }
                let c = &mut s.ctx[i * d + h * dh..i * d + (h + 1) * dh];
                for (j, &p) in s.p.iter().enumerate() {
                    let w = p / total;
                    let v = &s.qkv[j * 3 * d + 2 * d + h * dh..j * 3 * d + 2 * d + (h + 1) * dh];
                    for (cv, &vv) in c.iter_mut().zip(v) {
                        *cv += w * vv;
                    }
                }
            }
        }
        linear(&s.ctx, &l.wo, &l.bo, d, d, &mut s.h);
        s.x.iter_mut().zip(&s.h).for_each(|(x, h)| *x += h);
    }
}
