//! `keyward shield ...`: score texts and evaluate the prompt-injection shield.
//! Glue only: the classifier is `keyward_detect::shield`.
//!
//! Exit codes: `check` returns 1 when the text is flagged, 0 when not; both
//! commands return 2 on usage or I/O errors (via `anyhow` in `main`).

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use keyward_detect::shield::{metrics, Deep, DeepMode, Origin, Pipeline, Score, Shield};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum ShieldCmd {
    /// Score one text for prompt injection and print the verdict (exit 1 if flagged).
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Read the text from a file (`-` for standard input).
        #[arg(long, conflicts_with = "text")]
        file: Option<PathBuf>,
        /// The text to score.
        #[arg(required_unless_present = "file")]
        text: Option<String>,
        /// Which stages to run (default `full`; `fast` without deep-stage weights).
        #[arg(long, value_enum, default_value_t = StageArg::Full)]
        stage: StageArg,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Evaluate on a JSONL file of rows with `text` and `label` (1 = attack).
    Eval {
        /// The labelled rows.
        #[arg(long)]
        data: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Which stages to run: `fast` alone, the `full` pipeline (deep stage on
        /// every row), or `uncertain` (deep stage only inside the fast stage's uncertainty band).
        #[arg(long, value_enum, default_value_t = StageArg::Full)]
        stage: StageArg,
        /// Also report the recall at this false-positive rate (threshold chosen on these rows).
        #[arg(long, default_value_t = 0.05)]
        target_fpr: f64,
        /// Break the figures down by this field of the rows (e.g. `family`, `language`).
        #[arg(long)]
        group_by: Option<String>,
        /// Also write each row's score, stage and label to this JSONL file (for error analysis).
        #[arg(long)]
        scores_out: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Weights file to use instead of the built-in one.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Deep-stage weights file (`*.kwsd`) to use instead of the built-in one.
    #[arg(long, conflicts_with = "no_deep")]
    deep_weights: Option<PathBuf>,
    /// Run without the deep stage, as a build without its weights does.
    #[arg(long)]
    no_deep: bool,
    /// Decision threshold on the score (default: the one shipped with the weights).
    #[arg(long)]
    threshold: Option<f32>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageArg {
    Fast,
    Full,
    Uncertain,
}

impl StageArg {
    fn as_str(self) -> &'static str {
        match self {
            StageArg::Fast => "fast",
            StageArg::Full => "full",
            StageArg::Uncertain => "uncertain",
        }
    }

    fn mode(self) -> DeepMode {
        match self {
            StageArg::Fast => DeepMode::Off,
            StageArg::Full => DeepMode::On,
            StageArg::Uncertain => DeepMode::Uncertain,
        }
    }
}

fn load(model: &ModelArgs) -> Result<(Pipeline, f32)> {
    let shield = match &model.weights {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Shield::from_bytes(&bytes).with_context(|| format!("loading {}", p.display()))?
        }
        None => Shield::builtin().context("loading the built-in shield weights")?,
    };
    let deep = match (&model.deep_weights, model.no_deep) {
        (_, true) => None,
        (Some(p), false) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Some(Deep::from_bytes(&bytes).with_context(|| format!("loading {}", p.display()))?)
        }
        (None, false) => Pipeline::builtin().context("loading the built-in deep-stage weights")?.deep,
    };
    let pipeline = Pipeline::new(shield, deep);
    let threshold = model.threshold.unwrap_or_else(|| pipeline.threshold());
    if !(0.0..=1.0).contains(&threshold) {
        bail!("--threshold must be between 0 and 1");
    }
    Ok((pipeline, threshold))
}

/// What the JSON output says about the deep stage.
fn deep_state(p: &Pipeline) -> &'static str {
    if p.deep.is_some() {
        "available"
    } else {
        "unavailable"
    }
}

fn read_text(file: &Path) -> Result<String> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading standard input")?;
        return Ok(s);
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// An f32 setting as the decimal it was written as (0.8, not 0.800000011920929).
fn decimal(x: f32) -> f64 {
    (f64::from(x) * 1e6).round() / 1e6
}

fn origin(s: &Score) -> String {
    match s.origin {
        Origin::Text => "text".to_owned(),
        Origin::Payload(i) => format!("decoded-payload-{i}"),
    }
}

/// Run a `keyward shield` command; returns the process exit code.
pub fn run(cmd: ShieldCmd) -> Result<u8> {
    match cmd {
        ShieldCmd::Check { json, file, text, stage, model } => {
            let (pipeline, threshold) = load(&model)?;
            if !json {
                eprintln!("shield: {}", pipeline.deep_status());
            }
            let text = match (file, text) {
                (Some(f), _) => read_text(&f)?,
                (None, Some(t)) => t,
                (None, None) => bail!("give a TEXT or --file"),
            };
            let started = Instant::now();
            let s = pipeline.score(&text, stage.mode());
            let micros = started.elapsed().as_secs_f64() * 1e6;
            let flagged = s.exceeds(threshold);
            if json {
                let out = json!({
                    "score": s.score,
                    "threshold": decimal(threshold),
                    "verdict": if flagged { "injection" } else { "benign" },
                    "stage": s.stage.as_str(),
                    "mode": stage.mode().as_str(),
                    "deep_stage": deep_state(&pipeline),
                    "origin": origin(&s),
                    "windows": s.windows,
                    "micros": micros,
                });
                println!("{out}");
            } else {
                println!(
                    "{}  score {:.3} (threshold {:.2}, {} stage, {} windows, {:.0} µs)",
                    if flagged { "INJECTION" } else { "benign" },
                    s.score,
                    threshold,
                    s.stage.as_str(),
                    s.windows,
                    micros
                );
            }
            Ok(u8::from(flagged))
        }
        ShieldCmd::Eval { data, json, stage, target_fpr, group_by, scores_out, model } => {
            let mut per_row = String::new();
            let (pipeline, threshold) = load(&model)?;
            let mode = stage.mode();
            let mut deep_runs = 0usize;
            let raw = std::fs::read_to_string(&data).with_context(|| format!("reading {}", data.display()))?;
            let mut scores = Vec::new();
            let mut labels = Vec::new();
            let mut micros = Vec::new();
            let mut groups: Vec<String> = Vec::new();
            for (i, line) in raw.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let row: Value =
                    serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", data.display(), i + 1))?;
                let Some(text) = row.get("text").and_then(Value::as_str) else {
                    bail!("{}:{}: no string field `text`", data.display(), i + 1);
                };
                let label = match row.get("label") {
                    Some(Value::Number(n)) if n.as_i64() == Some(1) => true,
                    Some(Value::Number(n)) if n.as_i64() == Some(0) => false,
                    Some(Value::Bool(b)) => *b,
                    _ => bail!("{}:{}: `label` must be 0 or 1", data.display(), i + 1),
                };
                if let Some(field) = &group_by {
                    groups.push(match row.get(field) {
                        Some(Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                        None => "(none)".to_owned(),
                    });
                }
                let started = Instant::now();
                let s = pipeline.score(text, mode);
                micros.push(started.elapsed().as_secs_f64() * 1e6);
                deep_runs += usize::from(s.stage == keyward_detect::shield::Stage::Deep);
                if scores_out.is_some() {
                    let r =
                        json!({"row": i + 1, "label": u8::from(label), "score": s.score, "stage": s.stage.as_str()});
                    per_row.push_str(&r.to_string());
                    per_row.push('\n');
                }
                scores.push(s.score);
                labels.push(label);
            }
            if let Some(p) = &scores_out {
                std::fs::write(p, &per_row).with_context(|| format!("writing {}", p.display()))?;
            }
            let m = metrics::compute(&scores, &labels, threshold);
            let at = metrics::recall_at_fpr(&scores, &labels, target_fpr);
            let mut by_group = BTreeMap::new();
            if group_by.is_some() {
                let mut idx: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
                for (i, g) in groups.iter().enumerate() {
                    idx.entry(g.as_str()).or_default().push(i);
                }
                for (g, ix) in idx {
                    let s: Vec<f32> = ix.iter().map(|&i| scores[i]).collect();
                    let l: Vec<bool> = ix.iter().map(|&i| labels[i]).collect();
                    let gm = metrics::compute(&s, &l, threshold);
                    by_group.insert(
                        g.to_owned(),
                        json!({"n": gm.n, "positives": gm.positives, "accuracy": gm.accuracy,
                               "recall": gm.recall, "fpr": gm.fpr}),
                    );
                }
            }
            let p50 = metrics::percentile(&micros, 0.5);
            let p99 = metrics::percentile(&micros, 0.99);
            let out = json!({
                "data": data.display().to_string(),
                "stage": stage.as_str(),
                "mode": mode.as_str(),
                "deep_stage": deep_state(&pipeline),
                "deep_runs": deep_runs,
                "n": m.n,
                "positives": m.positives,
                "negatives": m.negatives,
                "threshold": decimal(threshold),
                "accuracy": m.accuracy,
                "precision": m.precision,
                "recall": m.recall,
                "f1": m.f1,
                "fpr": m.fpr,
                "auc": m.auc,
                "target_fpr": target_fpr,
                "threshold_at_target_fpr": at.map(|a| a.0),
                "recall_at_target_fpr": at.map(|a| a.1),
                "p50_us": p50,
                "p99_us": p99,
                "by_group": if group_by.is_some() { json!(by_group) } else { Value::Null },
            });
            if json {
                println!("{out}");
            } else {
                println!(
                    "n {}  accuracy {:.4}  precision {:.4}  recall {:.4}  f1 {:.4}  fpr {:.4}  auc {}  p50 {:.1} µs  p99 {:.1} µs  (stage {}, threshold {:.2})",
                    m.n,
                    m.accuracy,
                    m.precision,
                    m.recall,
                    m.f1,
                    m.fpr,
                    m.auc.map_or("n/a".to_owned(), |a| format!("{a:.4}")),
                    p50,
                    p99,
                    stage.as_str(),
                    threshold
                );
                if let Some((t, r)) = at {
                    println!("recall at fpr <= {target_fpr}: {r:.4} (threshold {t:.4})");
                }
                for (g, v) in &by_group {
                    println!("  {g}: {v}");
                }
            }
            Ok(0)
        }
    }
}
