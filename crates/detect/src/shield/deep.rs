//! The deep stage: all-MiniLM-L6-v2 distilled into static token vectors, pooled
//! over overlapping token windows, scored by a small MLP head.
//!
//! ```text
//! normalised text ─► WordPiece ids ─► windows of `window` tokens every `stride`
//!   each window: [mean ‖ max] of the tokens' 256-d vectors ─► standardise
//!                ─► ReLU(W1·x + b1) ─► w2·h + b2 = window logit
//! deep logit = highest window logit (over the text and its decoded payloads)
//! ```
//!
//! The token vectors come from `training/shield/distill.py`: each vocabulary
//! entry's sentence embedding under the full MiniLM encoder (`[CLS] t [SEP]`,
//! mean pooling), reduced by PCA to 256 dimensions and stored as int8 with a
//! per-token scale. Running the full encoder costs about 21 MFLOP per token
//! (0.2–0.4 s for a 4 KB document on one core); this costs a table look-up and
//! a few hundred additions per token, so the whole document is read, not a
//! sample of it. What is lost: word order beyond the window and context-
//! dependent meaning; the head sees which words occur together in a window.
//!
//! Version 2 files put a contextual student between the vectors and the
//! pooling ([`Encoder`], `encoder.rs`): a small transformer layer over each
//! window, so that a token's vector depends on its neighbours; its table holds
//! the static vectors projected to the encoder's width.
//!
//! File format (`*.kwsd`, little-endian):
//! ```text
//! magic "KWSD", u32 version 1 (static) or 2 (with an encoder)
//! u32 vocab, dims, window, stride, hidden
//! f32 b2, fusion_fast, fusion_deep, fusion_bias, threshold, band_lo, band_hi
//! f32 mu x 2*dims, sd x 2*dims, w1 x hidden*2*dims (row-major), b1 x hidden, w2 x hidden
//! version 2 only: the encoder block (see encoder.rs)
//! f32 scale x vocab, i8 table x vocab*dims
//! u32 length + vocab.txt
//! ```

pub use super::encoder::{Encoder, Layer, Scratch};
use super::wordpiece::{VocabError, WordPiece};
use std::borrow::Cow;

const MAGIC: &[u8; 4] = b"KWSD";
const STATIC_MAGIC: &[u8; 4] = b"KWST";
const VERSION: u32 = 1;
/// Version 2 adds a contextual [`Encoder`] between the token vectors and the pooling.
const VERSION_ENCODER: u32 = 2;

/// Why a deep-stage weights file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeepError {
    #[error("not a keyward deep-stage weights file (bad magic)")]
    BadMagic,
    #[error("unsupported deep-stage weights file version {0}")]
    Version(u32),
    #[error("deep-stage weights file is truncated or has trailing bytes")]
    Size,
    #[error("deep-stage weights file has an invalid shape: {0}")]
    Shape(&'static str),
    #[error("deep-stage vocabulary: {0}")]
    Vocab(#[from] VocabError),
}

/// Distilled static token vectors and the vocabulary they belong to.
#[derive(Clone)]
pub struct StaticEmbeddings {
    pub vocab_text: String,
    pub tokenizer: WordPiece,
    pub dims: usize,
    /// Per-token dequantisation scale.
    pub scales: Vec<f32>,
    /// `vocab * dims` int8 values (two's complement bytes), row-major. Borrowed
    /// from the binary for the built-in weights ([`Deep::from_static`]): the
    /// table is not copied at start, and only the rows that are looked up are
    /// ever paged in.
    pub table: Cow<'static, [u8]>,
}

impl std::fmt::Debug for StaticEmbeddings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticEmbeddings")
            .field("vocab", &self.scales.len())
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

/// The MLP head over pooled windows.
#[derive(Clone, PartialEq)]
pub struct Head {
    /// Window length and step, in tokens.
    pub window: usize,
    pub stride: usize,
    pub hidden: usize,
    /// Standardisation of the 2*dims pooled features.
    pub mu: Vec<f32>,
    pub sd: Vec<f32>,
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: f32,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("window", &self.window)
            .field("stride", &self.stride)
            .field("hidden", &self.hidden)
            .field("inputs", &self.mu.len())
            .finish_non_exhaustive()
    }
}

/// How the deep logit is combined with the fast one, and when it is consulted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Combined logit = `fast * fast_logit + deep * deep_logit + bias`.
    pub fast: f32,
    pub deep: f32,
    pub bias: f32,
    /// Decision threshold on the combined probability (equal to the fast
    /// stage's, by construction of `bias`).
    pub threshold: f32,
    /// In [`DeepMode::Uncertain`](super::pipeline::DeepMode), the deep stage
    /// runs only when the fast logit lies in `band_lo..=band_hi`.
    pub band_lo: f32,
    pub band_hi: f32,
}

/// The deep stage. Build once, share; every method takes `&self`.
#[derive(Debug, Clone)]
pub struct Deep {
    pub emb: StaticEmbeddings,
    /// Version 2 files: a contextual encoder over each window's token vectors
    /// before the pooling; `None` (version 1): the static vectors are pooled
    /// as they are.
    pub encoder: Option<Encoder>,
    pub head: Head,
    pub cal: Calibration,
}

pub(super) struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DeepError> {
        let end = self.at.checked_add(n).ok_or(DeepError::Size)?;
        let s = self.b.get(self.at..end).ok_or(DeepError::Size)?;
        self.at = end;
        Ok(s)
    }
    pub(super) fn u32(&mut self) -> Result<u32, DeepError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub(super) fn f32(&mut self) -> Result<f32, DeepError> {
        let v = f32::from_bits(self.u32()?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(DeepError::Shape("non-finite number"))
        }
    }
    pub(super) fn f32s(&mut self, n: usize) -> Result<Vec<f32>, DeepError> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// How a parsed file keeps its int8 table: copied, or borrowed from a `'static` file.
type Keep<'a> = fn(&'a [u8]) -> Cow<'static, [u8]>;

fn copied(b: &[u8]) -> Cow<'static, [u8]> {
    Cow::Owned(b.to_vec())
}

pub(super) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

const MAX_VOCAB: usize = 1 << 20;
const MAX_DIMS: usize = 4096;

impl StaticEmbeddings {
    /// Parse the output of `distill.py` (`*.kwst`).
    pub fn from_kwst(b: &[u8]) -> Result<Self, DeepError> {
        let mut r = Reader { b, at: 0 };
        if r.take(4)? != STATIC_MAGIC {
            return Err(DeepError::BadMagic);
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(DeepError::Version(version));
        }
        let (vocab, dims) = (r.u32()? as usize, r.u32()? as usize);
        let e = Self::read_body(&mut r, vocab, dims, copied)?;
        if r.at != b.len() {
            return Err(DeepError::Size);
        }
        Ok(e)
    }

    fn read_body<'a>(r: &mut Reader<'a>, vocab: usize, dims: usize, keep: Keep<'a>) -> Result<Self, DeepError> {
        if vocab == 0 || vocab > MAX_VOCAB || dims == 0 || dims > MAX_DIMS {
            return Err(DeepError::Shape("vocabulary or dimensions out of range"));
        }
        let scales = r.f32s(vocab)?;
        let table = keep(r.take(vocab.checked_mul(dims).ok_or(DeepError::Size)?)?);
        let n = r.u32()? as usize;
        let vocab_text =
            std::str::from_utf8(r.take(n)?).map_err(|_| DeepError::Shape("vocabulary is not UTF-8"))?.to_owned();
        let tokenizer = WordPiece::from_vocab(&vocab_text)?;
        if tokenizer.len() != vocab {
            return Err(DeepError::Shape("vocabulary length does not match the table"));
        }
        Ok(StaticEmbeddings { vocab_text, tokenizer, dims, scales, table })
    }

    /// `[mean ‖ max]` of the vectors of `ids` (zeros for no ids).
    pub fn pool(&self, ids: &[u32], out: &mut [f32]) {
        let d = self.dims;
        out.fill(0.0);
        if ids.is_empty() || self.scales.is_empty() {
            return;
        }
        let (mean, max) = out.split_at_mut(d);
        max.fill(f32::NEG_INFINITY);
        for &id in ids {
            let i = (id as usize).min(self.scales.len() - 1);
            let s = self.scales[i];
            let row = &self.table[i * d..(i + 1) * d];
            for ((m, x), &q) in mean.iter_mut().zip(max.iter_mut()).zip(row.iter()) {
                let v = f32::from(q as i8) * s;
                *m += v;
                *x = x.max(v);
            }
        }
        let k = 1.0 / ids.len() as f32;
        mean.iter_mut().for_each(|m| *m *= k);
    }

    /// The dequantised vector of token `id` (clamped to the vocabulary), added to `out`.
    pub(super) fn add_row(&self, id: u32, out: &mut [f32]) {
        let Some(last) = self.scales.len().checked_sub(1) else {
            return;
        };
        let i = (id as usize).min(last);
        let s = self.scales[i];
        let row = self.table.get(i * self.dims..(i + 1) * self.dims).unwrap_or_default();
        for (o, &q) in out.iter_mut().zip(row) {
            *o += f32::from(q as i8) * s;
        }
    }
}

impl Head {
    /// Logit of one pooled window.
    pub fn logit(&self, pooled: &[f32], scratch: &mut Vec<f32>) -> f32 {
        let n = self.mu.len();
        scratch.clear();
        scratch.extend(pooled.iter().zip(&self.mu).zip(&self.sd).map(|((x, m), s)| (x - m) / s));
        let mut z = self.b2;
        for j in 0..self.hidden {
            let row = &self.w1[j * n..(j + 1) * n];
            let a: f32 = self.b1[j] + row.iter().zip(scratch.iter()).map(|(w, x)| w * x).sum::<f32>();
            if a > 0.0 {
                z += self.w2[j] * a;
            }
        }
        z
    }
}

/// Token windows `[start, end)` over `n` tokens: `window` long, every
/// `stride`, the last one flush with the end; one (possibly empty) window for
/// a short text.
pub fn token_windows(n: usize, window: usize, stride: usize) -> Vec<(usize, usize)> {
    if n <= window {
        return vec![(0, n)];
    }
    let mut out = Vec::with_capacity((n - window) / stride + 2);
    let mut s = 0;
    while s + window < n {
        out.push((s, s + window));
        s += stride;
    }
    out.push((n - window, n));
    out
}

impl Deep {
    /// Parse a weights file (`*.kwsd`), copying its table.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DeepError> {
        Self::parse(b, copied)
    }

    /// Parse weights that live as long as the program (compiled in), borrowing
    /// the embedding table instead of copying its megabytes to the heap.
    pub fn from_static(b: &'static [u8]) -> Result<Self, DeepError> {
        Self::parse(b, Cow::Borrowed)
    }

    fn parse<'a>(b: &'a [u8], keep: Keep<'a>) -> Result<Self, DeepError> {
        let mut r = Reader { b, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(DeepError::BadMagic);
        }
        let version = r.u32()?;
        if version != VERSION && version != VERSION_ENCODER {
            return Err(DeepError::Version(version));
        }
        let (vocab, dims, window, stride, hidden) =
            (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        if window == 0 || stride == 0 || stride > window || hidden == 0 || hidden > 4096 {
            return Err(DeepError::Shape("window, stride or hidden size out of range"));
        }
        if dims == 0 || dims > MAX_DIMS {
            return Err(DeepError::Shape("dimensions out of range"));
        }
        let b2 = r.f32()?;
        let cal = Calibration {
            fast: r.f32()?,
            deep: r.f32()?,
            bias: r.f32()?,
            threshold: r.f32()?,
            band_lo: r.f32()?,
            band_hi: r.f32()?,
        };
        let n = 2 * dims;
        let mu = r.f32s(n)?;
        let sd = r.f32s(n)?;
        if sd.iter().any(|&s| s <= 0.0) {
            return Err(DeepError::Shape("non-positive standard deviation"));
        }
        let w1 = r.f32s(hidden * n)?;
        let b1 = r.f32s(hidden)?;
        let w2 = r.f32s(hidden)?;
        let encoder = if version == VERSION_ENCODER { Some(Encoder::read(&mut r, dims, window)?) } else { None };
        let emb = StaticEmbeddings::read_body(&mut r, vocab, dims, keep)?;
        if r.at != b.len() {
            return Err(DeepError::Size);
        }
        Ok(Deep { emb, encoder, head: Head { window, stride, hidden, mu, sd, w1, b1, w2, b2 }, cal })
    }

    /// Serialise to the weights file format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (h, e) = (&self.head, &self.emb);
        let mut out = Vec::with_capacity(e.table.len() + 4 * e.scales.len() + 4 * h.w1.len() + e.vocab_text.len() + 64);
        out.extend_from_slice(MAGIC);
        let version = if self.encoder.is_some() { VERSION_ENCODER } else { VERSION };
        for v in [version, e.scales.len() as u32, e.dims as u32, h.window as u32, h.stride as u32, h.hidden as u32] {
            put_u32(&mut out, v);
        }
        let c = &self.cal;
        put_f32s(&mut out, &[h.b2, c.fast, c.deep, c.bias, c.threshold, c.band_lo, c.band_hi]);
        for v in [&h.mu, &h.sd, &h.w1, &h.b1, &h.w2] {
            put_f32s(&mut out, v);
        }
        if let Some(enc) = &self.encoder {
            enc.write(&mut out);
        }
        put_f32s(&mut out, &e.scales);
        out.extend_from_slice(&e.table);
        put_u32(&mut out, e.vocab_text.len() as u32);
        out.extend_from_slice(e.vocab_text.as_bytes());
        out
    }

    pub fn tokenizer(&self) -> &WordPiece {
        &self.emb.tokenizer
    }

    /// Highest window logit of a normalised text, the byte range of that
    /// window, and the number of windows.
    pub fn max_logit(&self, text: &str) -> (f32, (usize, usize), usize) {
        let mut toks = Vec::new();
        self.emb.tokenizer.tokenize(text, |t| toks.push(t));
        let ids: Vec<u32> = toks.iter().map(|t| t.id).collect();
        let wins = token_windows(ids.len(), self.head.window, self.head.stride);
        let mut pooled = vec![0f32; 2 * self.emb.dims];
        let mut scratch = Vec::with_capacity(pooled.len());
        let mut work = Scratch::default();
        let mut best = (f32::NEG_INFINITY, (0, 0));
        for &(s, e) in &wins {
            match &self.encoder {
                Some(enc) => enc.pool(&self.emb, &ids[s..e], &mut work, &mut pooled),
                None => self.emb.pool(&ids[s..e], &mut pooled),
            }
            let z = self.head.logit(&pooled, &mut scratch);
            if z > best.0 {
                let span = if e > s { (toks[s].start, toks[e - 1].end) } else { (0, 0) };
                best = (z, span);
            }
        }
        (best.0, best.1, wins.len())
    }

    /// The combined logit of a fast and a deep logit.
    pub fn combine(&self, fast_logit: f32, deep_logit: f32) -> f32 {
        self.cal.fast * fast_logit + self.cal.deep * deep_logit + self.cal.bias
    }

    /// Does a fast logit fall in the band where the deep stage is consulted?
    pub fn uncertain(&self, fast_logit: f32) -> bool {
        (self.cal.band_lo..=self.cal.band_hi).contains(&fast_logit)
    }
}
