//! Train the shield's fast stage from `training/shield/build/train.jsonl`.
//!
//! ```text
//! cargo run --release -p keyward-detect --example shield_train -- \
//!     training/shield/build/train.jsonl crates/detect/src/shield/weights/fast.kwsh
//! ```
//! Rows: `text`, `label`; generated documents also carry `prefix`, `insert`,
//! `suffix`, and only windows over the inserted passage take the row's label
//! (windows clear of it are benign, windows partly over it are skipped). A
//! seeded 10 % of rows is kept back to choose the decision threshold. An
//! optional `weight` field scales a row.

use keyward_detect::shield::features::{window_features, Params, WindowFeatures};
use keyward_detect::shield::model::Model;
use keyward_detect::shield::normalize::normalize;
use keyward_detect::shield::train::{train, Sample, TrainConfig};
use keyward_detect::shield::{metrics, Shield};
use serde_json::Value;
use std::error::Error;

fn overlap(a: (usize, usize), b: (usize, usize)) -> usize {
    a.1.min(b.1).saturating_sub(a.0.max(b.0))
}

fn row_samples(row: &Value, p: Params, out: &mut Vec<Sample>) {
    let text = row.get("text").and_then(Value::as_str).unwrap_or("");
    let label = row.get("label").and_then(Value::as_i64).unwrap_or(0) == 1;
    let row_weight = row.get("weight").and_then(Value::as_f64).unwrap_or(1.0) as f32;
    let n = normalize(text);
    let wins = window_features(&n.text, n.flags, p);
    // The inserted passage's span in the normalised text, if this is a document.
    let span = row
        .get("insert")
        .and_then(Value::as_str)
        .map(|ins| normalize(ins).text)
        .filter(|ins| !ins.is_empty())
        .and_then(|ins| n.text.find(&ins).map(|s| (s, s + ins.len())));
    let mut labelled: Vec<(WindowFeatures, bool)> = Vec::new();
    match span {
        Some(sp) if label => {
            for w in wins {
                let o = overlap((w.start, w.end), sp);
                let need = (sp.1 - sp.0).min(w.end - w.start) * 6 / 10;
                if o == 0 {
                    labelled.push((w, false));
                } else if o >= need.max(1) {
                    labelled.push((w, true));
                }
            }
        }
        _ => labelled.extend(wins.into_iter().map(|w| (w, label))),
    }
    for pl in &n.payloads {
        labelled.extend(window_features(pl, n.flags, p).into_iter().map(|w| (w, label)));
    }
    let pos = labelled.iter().filter(|x| x.1).count().max(1) as f32;
    let neg = labelled.iter().filter(|x| !x.1).count().max(1) as f32;
    for (w, l) in labelled {
        let k = if l { pos } else { neg };
        out.push(Sample { features: w, label: l, weight: row_weight / k.sqrt() });
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
        return Err("usage: shield_train TRAIN.jsonl OUT.kwsh".into());
    };
    let mut cfg = TrainConfig::default();
    // Optional overrides for experiments: EPOCHS L2 LEARNING_RATE BITS WINDOW STRIDE.
    if let Some(e) = args.get(3) {
        cfg.epochs = e.parse()?;
    }
    if let Some(l) = args.get(4) {
        cfg.l2 = l.parse()?;
    }
    if let Some(l) = args.get(5) {
        cfg.learning_rate = l.parse()?;
    }
    // ... BITS WINDOW STRIDE.
    if let Some(b) = args.get(6) {
        cfg.params.bits = b.parse()?;
    }
    if let Some(w) = args.get(7) {
        cfg.params.window = w.parse()?;
    }
    if let Some(s) = args.get(8) {
        cfg.params.stride = s.parse()?;
    }
    let rows: Vec<Value> = std::fs::read_to_string(input)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    // Deterministic 90/10 split by row index hash.
    let is_val = |i: usize| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60 < 2;
    let mut samples = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if !is_val(i) {
            row_samples(r, cfg.params, &mut samples);
        }
    }
    // Balance the classes: equal total weight.
    let wp: f32 = samples.iter().filter(|s| s.label).map(|s| s.weight).sum();
    let wn: f32 = samples.iter().filter(|s| !s.label).map(|s| s.weight).sum();
    let total = wp + wn;
    for s in &mut samples {
        s.weight *= if s.label { total / (2.0 * wp) } else { total / (2.0 * wn) };
    }
    eprintln!("rows {} windows {} (positive weight {wp:.0}, negative {wn:.0})", rows.len(), samples.len());
    let t = train(&samples, &cfg);
    let model = Model::from_float(cfg.params, t.bias, t.dense, &t.ngram, 0.5);
    // Threshold: best F1 on the held-back rows.
    let shield = Shield::from_model(model.clone());
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for (i, r) in rows.iter().enumerate() {
        if is_val(i) {
            let text = r.get("text").and_then(Value::as_str).unwrap_or("");
            scores.push(shield.score(text).score);
            labels.push(r.get("label").and_then(Value::as_i64).unwrap_or(0) == 1);
        }
    }
    let mut best = (0.5f32, -1.0f64);
    for k in 5..96 {
        let th = k as f32 / 100.0;
        let m = metrics::compute(&scores, &labels, th);
        if m.f1 > best.1 + 1e-9 {
            best = (th, m.f1);
        }
    }
    let m = metrics::compute(&scores, &labels, best.0);
    eprintln!(
        "validation n={} threshold={:.2} acc={:.4} f1={:.4} fpr={:.4} auc={:.4}",
        m.n,
        best.0,
        m.accuracy,
        m.f1,
        m.fpr,
        m.auc.unwrap_or(0.0)
    );
    let model = Model { threshold: best.0, ..model };
    std::fs::write(output, model.to_bytes())?;
    eprintln!("wrote {output}: dense weights {:?} bias {:.3}", model.dense, model.bias);
    Ok(())
}
