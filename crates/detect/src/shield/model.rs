//! The fast-stage model and its file format.
//!
//! ```text
//! magic    "KWSH"
//! u32      version (1)
//! u32      bits, window, stride, dense (= features::DENSE)
//! f32      bias, scale, threshold
//! f32      dense weights  x dense
//! i16      n-gram weights x 2^bits   (real weight = value * scale)
//! ```
//! All numbers little-endian. n-gram weights are quantised to i16 with one
//! scale, so a window's n-gram sum is exact integer arithmetic and the table
//! (512 KiB at 18 bits) stays in a core's L2 cache.

use super::features::{
    char_ngram_buckets, for_each_char_position, for_each_word_event, windows, Context, Params, WindowFeatures, DENSE,
};
use super::normalize::Flags;

const MAGIC: &[u8; 4] = b"KWSH";
const VERSION: u32 = 1;
const HEADER: usize = 4 + 4 * 5 + 4 * 3;

/// Why a weights file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("not a keyward shield weights file (bad magic)")]
    BadMagic,
    #[error("unsupported weights file version {0}")]
    Version(u32),
    #[error("weights file is truncated or has trailing bytes (expected {expected} bytes, got {got})")]
    Size { expected: usize, got: usize },
    #[error("weights file has an invalid shape: {0}")]
    Shape(&'static str),
}

/// A trained linear model over [`features`](super::features).
#[derive(Clone, PartialEq)]
pub struct Model {
    pub params: Params,
    pub bias: f32,
    pub scale: f32,
    /// Default decision threshold on the probability.
    pub threshold: f32,
    pub dense: [f32; DENSE],
    pub ngram: Vec<i16>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("params", &self.params)
            .field("bias", &self.bias)
            .field("threshold", &self.threshold)
            .field("buckets", &self.ngram.len())
            .finish_non_exhaustive()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_bits(u32_at(b, at))
}

impl Model {
    /// Parse a weights file.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ModelError> {
        if b.len() < HEADER {
            return Err(ModelError::Size { expected: HEADER, got: b.len() });
        }
        if &b[..4] != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let version = u32_at(b, 4);
        if version != VERSION {
            return Err(ModelError::Version(version));
        }
        let (bits, window, stride, dense) = (u32_at(b, 8), u32_at(b, 12), u32_at(b, 16), u32_at(b, 20));
        if !(8..=24).contains(&bits) {
            return Err(ModelError::Shape("bits outside 8..=24"));
        }
        if window == 0 || stride == 0 || stride > window {
            return Err(ModelError::Shape("window and stride must be positive, stride <= window"));
        }
        if dense as usize != DENSE {
            return Err(ModelError::Shape("dense feature count does not match this build"));
        }
        let buckets = 1usize << bits;
        let expected = HEADER + 4 * DENSE + 2 * buckets;
        if b.len() != expected {
            return Err(ModelError::Size { expected, got: b.len() });
        }
        let (bias, scale, threshold) = (f32_at(b, 24), f32_at(b, 28), f32_at(b, 32));
        if !(bias.is_finite() && scale.is_finite() && threshold.is_finite()) {
            return Err(ModelError::Shape("non-finite bias, scale or threshold"));
        }
        let mut dw = [0f32; DENSE];
        for (k, w) in dw.iter_mut().enumerate() {
            *w = f32_at(b, HEADER + 4 * k);
            if !w.is_finite() {
                return Err(ModelError::Shape("non-finite dense weight"));
            }
        }
        let off = HEADER + 4 * DENSE;
        let ngram = b[off..].chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])).collect();
        Ok(Model { params: Params { bits, window, stride }, bias, scale, threshold, dense: dw, ngram })
    }

    /// Serialise to the weights file format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 4 * DENSE + 2 * self.ngram.len());
        out.extend_from_slice(MAGIC);
        for v in [VERSION, self.params.bits, self.params.window, self.params.stride, DENSE as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.bias, self.scale, self.threshold] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in self.dense {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in &self.ngram {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Build from real-valued weights, quantising the n-gram table.
    pub fn from_float(params: Params, bias: f32, dense: [f32; DENSE], ngram: &[f32], threshold: f32) -> Self {
        let max = ngram.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 { max / f32::from(i16::MAX) } else { 1.0 };
        let q =
            ngram.iter().map(|w| (w / scale).round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16).collect();
        Model { params, bias, scale, threshold, dense, ngram: q }
    }

    /// A model whose every weight is zero (scores 0.5 everywhere).
    pub fn zero(params: Params) -> Self {
        Model {
            params,
            bias: 0.0,
            scale: 1.0,
            threshold: 0.5,
            dense: [0.0; DENSE],
            ngram: vec![0; 1usize << params.bits],
        }
    }

    #[inline]
    fn weight(&self, bucket: u32) -> i32 {
        self.ngram.get(bucket as usize).map_or(0, |&w| i32::from(w))
    }

    /// Highest window logit of a normalised text, and the window it came from.
    ///
    /// Every window but the last starts at a multiple of `stride` and is
    /// `window` long, so its bounds are multiples of `g = gcd(window, stride)`:
    /// the n-gram weights and event counts are summed per block of `g` positions
    /// (32 with the shipped shape) and each window is read off prefix sums over
    /// the blocks. The last window (which ends at the text's end) is summed on
    /// its own. All sums are exact integers, so this gives the same numbers as
    /// summing each window's events one by one.
    pub fn max_logit(&self, text: &str, flags: Flags) -> (f32, (usize, usize), usize) {
        let b = text.as_bytes();
        let n = b.len();
        let p = self.params;
        let g = gcd(p.window as usize, (p.stride as usize).max(1)).max(1);
        // The last window's events are summed apart.
        let last_start = n.saturating_sub(p.window as usize);
        // Block k (positions k*g .. k*g+g) is summed into slot k + 1; the
        // prefix pass below turns slot k into the sum of all blocks before k.
        let slots = n / g + 2;
        let mut wsum = vec![0i64; slots];
        let mut csum = vec![0u32; slots];
        let (mut last_w, mut last_c) = (0i64, 0u32);
        let table = &self.ngram[..];
        let w = |bucket: u32| table.get(bucket as usize).map_or(0, |&w| i64::from(w));
        // Char n-grams. Positions below `full` have all three lengths: sum them
        // per block in a tight loop. With a full-size table (always, for a
        // parsed file) `bucket < 2^bits` indexes it without a fallback.
        let full = if n >= 5 { n - 4 } else { 0 };
        let mask = (1usize << p.bits) - 1;
        let exact = table.get(..=mask);
        let shipped =
            exact.filter(|_| p.bits == SHIPPED_BITS).and_then(|t| <&[i16; 1 << SHIPPED_BITS]>::try_from(t).ok());
        for (k, slot) in (0..full).step_by(g).zip(1..) {
            let hi = (k + g).min(full);
            let grams = b[k..hi + 4].windows(5);
            let sum = match (shipped, exact) {
                (Some(t), _) => char_sum_shipped(t, &b[k..hi + 4]),
                (None, Some(t)) => {
                    let at = |k: u32| i64::from(t[k as usize & mask]);
                    let mut sum = 0i64;
                    for q in grams {
                        if let &[a0, a1, a2, a3, a4] = q {
                            let [k3, k4, k5] = char_ngram_buckets([a0, a1, a2, a3, a4], p.bits);
                            sum += at(k3) + at(k4) + at(k5);
                        }
                    }
                    sum
                }
                (None, None) => grams
                    .map(|q| match q {
                        &[a0, a1, a2, a3, a4] => char_ngram_buckets([a0, a1, a2, a3, a4], p.bits).map(w).iter().sum(),
                        _ => 0,
                    })
                    .sum(),
            };
            wsum[slot] = sum;
            csum[slot] = 3 * (hi - k) as u32;
        }
        // The last four positions (fewer lengths fit), and the last window's char n-grams.
        let tail = n.saturating_sub(4);
        for_each_char_position(&b[tail..], p.bits, |pos, buckets| {
            let slot = (tail + pos) / g + 1;
            wsum[slot] += buckets.iter().map(|&k| w(k)).sum::<i64>();
            csum[slot] += buckets.len() as u32;
        });
        for_each_char_position(&b[last_start..], p.bits, |_, buckets| {
            last_w += buckets.iter().map(|&k| w(k)).sum::<i64>();
            last_c += buckets.len() as u32;
        });
        {
            // Word events come in increasing position order. With a block size
            // that is a power of two (32 for the shipped shape) the slot is a
            // shift away; a loop that steps block by block would mispredict at
            // about every other word.
            let shift = g.is_power_of_two().then(|| g.trailing_zeros());
            let (mut slot, mut next) = (1usize, g);
            for_each_word_event(b, p.bits, |pos, bucket| {
                match shift {
                    Some(k) => slot = (pos >> k) + 1,
                    None => {
                        while pos >= next {
                            slot += 1;
                            next += g;
                        }
                    }
                }
                let x = w(bucket);
                wsum[slot] += x;
                csum[slot] += 1;
                if pos >= last_start {
                    last_w += x;
                    last_c += 1;
                }
            });
        }
        for i in 1..slots {
            wsum[i] += wsum[i - 1];
            csum[i] += csum[i - 1];
        }
        let ctx = Context::new(text, flags);
        let wins = windows(n, p);
        let mut dense = ctx.dense_cursor();
        let dot = |d: [f32; DENSE]| -> f32 { d.iter().zip(self.dense.iter()).map(|(x, w)| x * w).sum() };
        // Most windows hold no lexicon hit; their dense features, and so their
        // dense term, are all the same.
        let no_hits = dot(ctx.dense_without_hits());
        let mut best = (f32::NEG_INFINITY, (0, 0));
        for (i, &(s, e)) in wins.iter().enumerate() {
            let (ws, cs) = if i + 1 == wins.len() {
                (last_w, last_c)
            } else {
                (wsum[e / g] - wsum[s / g], csum[e / g] - csum[s / g])
            };
            let events = cs.max(1) as f32;
            let ng = ws as f32 * self.scale / events.sqrt();
            let dense = match dense.dense(s, e) {
                Some(d) => dot(d),
                None => no_hits,
            };
            let logit = self.bias + ng + dense;
            if logit > best.0 {
                best = (logit, (s, e));
            }
        }
        (best.0, best.1, wins.len())
    }

    /// Logit of one window from its explicit features (the trainer's view;
    /// equal to what [`max_logit`](Self::max_logit) computes for that window).
    pub fn window_logit(&self, w: &WindowFeatures) -> f32 {
        let ng: f32 = w.sparse.iter().map(|&(b, v)| self.weight(b) as f32 * self.scale * v).sum();
        let dense: f32 = w.dense.iter().zip(self.dense.iter()).map(|(x, w)| x * w).sum();
        self.bias + ng + dense
    }
}

/// The n-gram table size of the shipped weights (see [`Params::default`]).
const SHIPPED_BITS: u32 = 18;

/// Char n-gram weight sum over the positions of `grams` that have all five
/// bytes, for a table of the shipped size. With the size a constant, every
/// bucket (the top 18 bits of a product) is known to index the table: no
/// mask, no bounds check, and a fixed shift, in the stage's hottest loop.
///
/// The three weights of a position are added first and only their sum joins
/// the running total: one dependent addition per position instead of three
/// (integer sums, so the order does not change them).
fn char_sum_shipped(t: &[i16; 1 << SHIPPED_BITS], grams: &[u8]) -> i64 {
    let mut sum = 0i64;
    for q in grams.windows(5) {
        if let &[a0, a1, a2, a3, a4] = q {
            let [k3, k4, k5] = char_ngram_buckets([a0, a1, a2, a3, a4], SHIPPED_BITS);
            let at = |k: u32| t.get(k as usize).map_or(0, |&w| i32::from(w));
            sum += i64::from(at(k3) + at(k4) + at(k5));
        }
    }
    sum
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
