//! Training the fast stage: L2-regularised logistic regression with AdaGrad,
//! seeded, single-threaded, so the same samples and seed give the same bytes.
//! The n-gram weights are kept at or above a floor (0 by default): an n-gram
//! can only be evidence of an attack, so benign words around an attack in a
//! window cannot cancel it (training/shield/README.md, "Real documents").
//! Pure computation; reading data and writing the weights file is the job of
//! `training/shield/` (see `examples/shield_train.rs`).

use super::features::{Params, WindowFeatures, DENSE};

/// One training window with its label and weight.
#[derive(Debug, Clone)]
pub struct Sample {
    pub features: WindowFeatures,
    pub label: bool,
    pub weight: f32,
}

/// Hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct TrainConfig {
    pub params: Params,
    pub epochs: u32,
    pub learning_rate: f32,
    pub l2: f32,
    pub seed: u64,
    /// No n-gram weight goes below this (0: evidence of attacks only;
    /// `f32::NEG_INFINITY`: unbounded).
    pub ngram_floor: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            params: Params::default(),
            epochs: 12,
            learning_rate: 0.2,
            l2: 1e-5,
            seed: 0x6b65_7977_6172_6421,
            ngram_floor: 0.0,
        }
    }
}

/// Real-valued weights before quantisation.
#[derive(Debug, Clone)]
pub struct Trained {
    pub bias: f32,
    pub dense: [f32; DENSE],
    pub ngram: Vec<f32>,
}

impl Trained {
    pub fn logit(&self, w: &WindowFeatures) -> f32 {
        let ng: f32 = w.sparse.iter().map(|&(b, v)| self.ngram[b as usize] * v).sum();
        let d: f32 = w.dense.iter().zip(self.dense.iter()).map(|(x, w)| x * w).sum();
        self.bias + ng + d
    }
}

/// splitmix64: small, seeded, reproducible everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Fit the model.
pub fn train(samples: &[Sample], cfg: &TrainConfig) -> Trained {
    let buckets = 1usize << cfg.params.bits;
    let mut t = Trained { bias: 0.0, dense: [0.0; DENSE], ngram: vec![0.0; buckets] };
    let mut g_ngram = vec![1e-8f32; buckets];
    let mut g_dense = [1e-8f32; DENSE];
    let mut g_bias = 1e-8f32;
    let mut order: Vec<usize> = (0..samples.len()).collect();
    let mut rng = Rng(cfg.seed);
    let lr = cfg.learning_rate;
    for _ in 0..cfg.epochs {
        for i in (1..order.len()).rev() {
            let j = rng.below(i + 1);
            order.swap(i, j);
        }
        for &i in &order {
            let s = &samples[i];
            let y = if s.label { 1.0 } else { 0.0 };
            let g = (sigmoid(t.logit(&s.features)) - y) * s.weight;
            for &(b, v) in &s.features.sparse {
                let b = b as usize;
                let grad = g * v + cfg.l2 * t.ngram[b];
                g_ngram[b] += grad * grad;
                t.ngram[b] = (t.ngram[b] - lr * grad / g_ngram[b].sqrt()).max(cfg.ngram_floor);
            }
            for ((w, gsum), x) in t.dense.iter_mut().zip(g_dense.iter_mut()).zip(s.features.dense) {
                let grad = g * x + cfg.l2 * *w;
                *gsum += grad * grad;
                *w -= lr * grad / gsum.sqrt();
            }
            g_bias += g * g;
            t.bias -= lr * g / g_bias.sqrt();
        }
    }
    t
}
