//! The two-stage pipeline: the fast stage on everything, the deep stage
//! always, never, or only where the fast stage is unsure.
//!
//! ```text
//! text ─► normalize ─► fast stage ─► fast logit
//!                        │ DeepMode::On, or Uncertain with the fast logit in the band
//!                        ▼
//!                      deep stage ─► deep logit ─► a·fast + b·deep + c ─► Score (stage Deep)
//! ```
//! The combination is fitted on rows held back from training, and its bias is
//! shifted so that the combined score's decision threshold equals the fast
//! stage's: one threshold serves every mode.

use super::deep::{Deep, DeepError};
use super::normalize::{normalize, Normalized};
use super::parts::{screened_parts, Part};
use super::{sigmoid, ModelError, Origin, Score, Shield, Stage};

/// The deep-stage weights shipped with this build (feature `deep-weights`).
#[cfg(feature = "deep-weights")]
pub static BUILTIN_DEEP_WEIGHTS: Option<&[u8]> = Some(include_bytes!("weights/deep.kwsd"));
/// This build was made without the `deep-weights` feature.
#[cfg(not(feature = "deep-weights"))]
pub static BUILTIN_DEEP_WEIGHTS: Option<&[u8]> = None;

/// When the deep stage runs (a per-key setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeepMode {
    /// Fast stage only.
    Off,
    /// Both stages on every part.
    On,
    /// The deep stage only for parts whose fast score falls in the uncertainty band.
    #[default]
    Uncertain,
}

impl DeepMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeepMode::Off => "off",
            DeepMode::On => "on",
            DeepMode::Uncertain => "uncertain",
        }
    }
}

impl std::str::FromStr for DeepMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(DeepMode::Off),
            "on" => Ok(DeepMode::On),
            "uncertain" => Ok(DeepMode::Uncertain),
            other => Err(format!("deep mode must be off, on or uncertain, not {other:?}")),
        }
    }
}

/// Why the pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("fast stage: {0}")]
    Fast(#[from] ModelError),
    #[error("deep stage: {0}")]
    Deep(#[from] DeepError),
}

/// Fast stage plus, when its weights are present, the deep stage.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub fast: Shield,
    pub deep: Option<Deep>,
}

impl Pipeline {
    /// Both stages with the weights compiled into this build; the deep stage
    /// is absent when the build has none (see [`Pipeline::deep_status`]).
    pub fn builtin() -> Result<Self, PipelineError> {
        let fast = Shield::builtin()?;
        let deep = BUILTIN_DEEP_WEIGHTS.map(Deep::from_static).transpose()?;
        Ok(Pipeline { fast, deep })
    }

    pub fn new(fast: Shield, deep: Option<Deep>) -> Self {
        Pipeline { fast, deep }
    }

    /// One line for the start-up log: which stages are available.
    pub fn deep_status(&self) -> &'static str {
        match &self.deep {
            Some(d) if d.encoder.is_some() => "deep stage available (contextual student over distilled MiniLM vectors)",
            Some(_) => "deep stage available (static MiniLM distillation)",
            None => "deep stage unavailable (no weights): fast stage only",
        }
    }

    /// The default decision threshold (the same for every mode).
    pub fn threshold(&self) -> f32 {
        self.fast.threshold()
    }

    /// Score a text with the given deep mode.
    pub fn score(&self, text: &str, mode: DeepMode) -> Score {
        self.score_normalized(&normalize(text), mode)
    }

    /// Score an already normalised text.
    pub fn score_normalized(&self, n: &Normalized, mode: DeepMode) -> Score {
        let (fast, text) = self.fast.score_read(n);
        let Some(deep) = &self.deep else {
            return fast;
        };
        let run = match mode {
            DeepMode::Off => false,
            DeepMode::On => true,
            DeepMode::Uncertain => deep.uncertain(fast.logit),
        };
        if !run {
            return fast;
        }
        let (mut best, mut window, mut windows) = deep.max_logit(&text);
        let mut origin = Origin::Text;
        for (i, p) in n.payloads.iter().enumerate() {
            let (l, w, k) = deep.max_logit(p);
            windows += k;
            if l > best {
                (best, window, origin) = (l, w, Origin::Payload(i));
            }
        }
        let logit = deep.combine(fast.logit, best);
        Score { score: sigmoid(logit), logit, stage: Stage::Deep, origin, window, windows: windows + fast.windows }
    }

    /// Screen a Messages API request body (the parts [`Shield::screen_request`] screens).
    pub fn screen_request<'a>(&self, request: &'a serde_json::Value, mode: DeepMode) -> Vec<(Part<'a>, Score)> {
        screened_parts(request)
            .into_iter()
            .map(|p| {
                let s = self.score(&p.text, mode);
                (p, s)
            })
            .collect()
    }
}
