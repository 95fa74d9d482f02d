//! Prompt-injection shield: a local classifier for untrusted request content.
//!
//! ```text
//! text ─► normalize ─► main text + decoded payloads
//!                        │ each: overlapping windows ─► fast stage (linear model)
//!                        ▼
//!                      Score = highest window probability over all of them
//! ```
//!
//! * [`normalize`] undoes obfuscation (NFKC, invisible characters, look-alikes,
//!   leetspeak, spaced letters, base64/hex/binary/URL encoding).
//! * [`features`] hashes byte and word n-grams and computes hand-made features
//!   per window; [`model`] holds the weights (a committed file, compiled in, or
//!   bytes the caller read) and scores a window in O(1) from prefix sums.
//! * [`parts`] picks the screened parts out of a Messages request.
//! * [`train`] and [`metrics`] serve the tooling (`training/shield/`, `keyward
//!   shield eval`).
//!
//! * [`deep`] is the second stage (static token vectors distilled from
//!   all-MiniLM-L6-v2, pooled over token windows, an MLP head; tokenised by
//!   [`wordpiece`]; version 2 weights add the contextual student of
//!   [`encoder`] before the pooling); [`pipeline`] runs both stages per [`DeepMode`] and says
//!   in [`Score::stage`] which one decided.
//!
//! Everything here is pure and synchronous: no I/O, no global state besides
//! lazily built keyword and per-character tables.

pub mod cipher;
pub mod deep;
pub mod encoder;
pub mod features;
pub mod metrics;
pub mod model;
pub mod normalize;
pub mod parts;
pub mod pipeline;
pub mod train;
pub mod typo;
pub mod wordpiece;

pub use deep::{Deep, DeepError};
pub use model::{Model, ModelError};
pub use normalize::{normalize, Normalized};
pub use parts::{screened_parts, Part, PartKind, RequestView, SystemField};
pub use pipeline::{DeepMode, Pipeline, PipelineError};
use std::borrow::Cow;

/// The weights shipped with this build (see `training/shield/README.md`).
pub static BUILTIN_WEIGHTS: &[u8] = include_bytes!("weights/fast.kwsh");

/// Which stage produced a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Hashed n-grams and hand-made features, linear model.
    Fast,
    /// The deep stage ran; the score combines its logit with the fast one.
    Deep,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fast => "fast",
            Stage::Deep => "deep",
        }
    }
}

/// Where the highest-scoring window was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The text itself (after normalisation).
    Text,
    /// A base64 or hex payload decoded from the text (index among the payloads).
    Payload(usize),
}

/// The result of screening one text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Probability that the text carries an injection, 0..=1.
    pub score: f32,
    /// The raw logit behind `score`.
    pub logit: f32,
    pub stage: Stage,
    pub origin: Origin,
    /// Byte range of the deciding window in the payload, or in the main text
    /// as it was scored ([`main_text`]: the normalised text, without the
    /// markers of encoded runs whose text read as benign).
    pub window: (usize, usize),
    /// Windows scored, over the text and its payloads.
    pub windows: usize,
}

impl Score {
    /// Is this score at or above `threshold`?
    pub fn exceeds(&self, threshold: f32) -> bool {
        self.score >= threshold
    }
}

/// The classifier. Build one at start (it parses and holds the weights, about
/// 512 KiB) and share it (`Arc<Shield>`); every method takes `&self`, and
/// scoring allocates only scratch space proportional to the text.
#[derive(Debug, Clone)]
pub struct Shield {
    model: Model,
}

pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl Shield {
    /// The shield with the weights compiled into this build.
    pub fn builtin() -> Result<Self, ModelError> {
        Self::from_bytes(BUILTIN_WEIGHTS)
    }

    /// A shield from the bytes of a weights file (`*.kwsh`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        Ok(Self::from_model(Model::from_bytes(bytes)?))
    }

    /// A shield around a model (e.g. one just trained).
    pub fn from_model(model: Model) -> Self {
        features::warm_up();
        Shield { model }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The default decision threshold that came with the weights.
    pub fn threshold(&self) -> f32 {
        self.model.threshold
    }

    /// Score a text: normalise it, score the text and each decoded payload,
    /// keep the highest window.
    pub fn score(&self, text: &str) -> Score {
        self.score_normalized(&normalize(text))
    }

    /// Screen a Messages API request body: score each untrusted part (user
    /// turns, documents, tool results; never the system prompt), in request
    /// order. The request's verdict is the highest part score.
    pub fn screen_request<'a>(&self, request: &'a serde_json::Value) -> Vec<(Part<'a>, Score)> {
        screened_parts(request)
            .into_iter()
            .map(|p| {
                let s = self.score(&p.text);
                (p, s)
            })
            .collect()
    }

    /// Score an already normalised text.
    pub fn score_normalized(&self, n: &Normalized) -> Score {
        self.score_read(n).0
    }

    /// The fast stage's score, and the main text as it was scored (see
    /// [`main_text`]), for the deep stage to read the same.
    pub fn score_read<'a>(&self, n: &'a Normalized) -> (Score, Cow<'a, str>) {
        let mut windows = 0;
        let mut payload: Option<(f32, (usize, usize), usize)> = None;
        for (i, p) in n.payloads.iter().enumerate() {
            let (l, w, k) = self.model.max_logit(p, n.flags);
            windows += k;
            if payload.is_none_or(|b| l > b.0) {
                payload = Some((l, w, i));
            }
        }
        let text = main_text(n, payload.map(|p| p.0));
        let (logit, window, k) = self.model.max_logit(&text, n.flags);
        windows += k;
        let mut best = (logit, window, Origin::Text);
        if let Some((l, w, i)) = payload.filter(|p| p.0 > logit) {
            best = (l, w, Origin::Payload(i));
        }
        let score = Score {
            score: sigmoid(best.0),
            logit: best.0,
            stage: Stage::Fast,
            origin: best.2,
            window: best.1,
            windows,
        };
        (score, text)
    }
}

/// A payload whose logit on its own is below this (probability one half) reads
/// as benign (see [`main_text`]).
const BENIGN_PAYLOAD_LOGIT: f32 = 0.0;

/// The main text as it is scored. An encoded run cut out of it left a marker
/// word ([`normalize::ENC_MARKER`]) that says "something was hidden here", and
/// in the training data every encoded text is an attack, so the marker alone
/// flags a benign attachment, data URI or API field in base64. When every
/// payload reads as benign on its own (the highest payload logit below
/// `BENIGN_PAYLOAD_LOGIT`: more likely benign than an attack), the markers are
/// left out: what was encoded has been read and found harmless. Otherwise the
/// text is scored as normalised, and the marker counts as evidence that
/// something was hidden.
pub fn main_text(n: &Normalized, best_payload_logit: Option<f32>) -> Cow<'_, str> {
    let benign = best_payload_logit.is_some_and(|l| l < BENIGN_PAYLOAD_LOGIT);
    if !benign || !n.text.contains(normalize::ENC_MARKER) {
        return Cow::Borrowed(&n.text);
    }
    let mut out = String::with_capacity(n.text.len());
    for w in n.text.split(' ').filter(|w| *w != normalize::ENC_MARKER) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod deep_tests;
#[cfg(test)]
mod normalize_ref;
#[cfg(test)]
mod parts_ref;
#[cfg(test)]
mod tests;
