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

/// The source a row is reported under: generated documents as one group.
fn source_group(row: &Value) -> &'static str {
    match row.get("src").and_then(Value::as_str).unwrap_or("") {
        "deepset" => "deepset",
        "jackhhao" => "jackhhao",
        s if s.starts_with("gen_doc_") => "gen_doc",
        s if s.starts_with("gen_attack") => "gen_attack_prompt",
        s if s.starts_with("gen_benign") => "gen_benign_prompt",
        "deepset_pair" => "deepset_pair",
        _ => "other",
    }
}

/// The default decision threshold stored in the weights: a fixed policy that
/// favours few false positives (keys can lower it), not fitted. Fitting it on
/// the held-back rows was tried (best F1 over all rows; best mean balanced
/// accuracy over sources) and moved it between 0.58 and 0.93 from one data
/// change to the next: the generated held-back rows are separable at any
/// threshold, and the real ones (about 80 deepset and 200 jackhhao rows) are
/// too few to place it. `SHIELD_THRESHOLD` overrides it for experiments.
fn threshold() -> f32 {
    std::env::var("SHIELD_THRESHOLD").ok().and_then(|v| v.parse().ok()).unwrap_or(0.80)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
        return Err("usage: shield_train TRAIN.jsonl OUT.kwsh".into());
    };
    let mut cfg = TrainConfig::default();
    if let Ok(f) = std::env::var("SHIELD_NGRAM_FLOOR") {
        cfg.ngram_floor = f.parse()?;
    }
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
    // Figures on the held-back rows at the threshold (see `threshold`).
    let shield = Shield::from_model(model.clone());
    let (mut scores, mut labels, mut sources) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in rows.iter().enumerate() {
        if is_val(i) {
            let text = r.get("text").and_then(Value::as_str).unwrap_or("");
            scores.push(shield.score(text).score);
            labels.push(r.get("label").and_then(Value::as_i64).unwrap_or(0) == 1);
            sources.push(source_group(r));
        }
    }
    if let Ok(path) = std::env::var("SHIELD_VAL_OUT") {
        let lines: Vec<String> = (0..scores.len())
            .map(|i| serde_json::json!({"score": scores[i], "label": labels[i], "group": sources[i]}).to_string())
            .collect();
        std::fs::write(path, lines.join("\n") + "\n")?;
    }
    let best = (threshold(), 0.0);
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
    // Per source, at the chosen threshold (the held-back rows of each).
    let mut groups: Vec<&str> = sources.clone();
    groups.sort_unstable();
    groups.dedup();
    for g in groups {
        let (s, l): (Vec<f32>, Vec<bool>) =
            (0..scores.len()).filter(|&i| sources[i] == g).map(|i| (scores[i], labels[i])).unzip();
        let m = metrics::compute(&s, &l, best.0);
        eprintln!(
            "  {g:<18} n={:<5} acc={:.4} recall={:.4} fpr={:.4} auc={:.4}",
            m.n,
            m.accuracy,
            m.recall,
            m.fpr,
            m.auc.unwrap_or(f64::NAN)
        );
    }
    let model = Model { threshold: best.0, ..model };
    std::fs::write(output, model.to_bytes())?;
    eprintln!("wrote {output}: dense weights {:?} bias {:.3}", model.dense, model.bias);
    Ok(())
}
