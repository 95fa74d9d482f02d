//! Time the shield on 4 KB segments, one core: the fast stage, or the
//! pipeline with the deep stage `on` or `uncertain`.
//!
//! ```text
//! cargo run --release -p keyward-detect --example shield_bench -- [FILE.jsonl [WEIGHTS.kwsh|"" [off|on|uncertain [DEEP.kwsd]]]]
//! ```
//! Segments are cut (at character boundaries, 4096 bytes each) from the
//! concatenated `text` fields of FILE.jsonl, or from a built-in mix of prose,
//! HTML, code and non-Latin text. Each segment is scored 20 times; the median
//! and 99th percentile of all timings are printed, in microseconds.
//!
//! ```text
//! cargo run --release -p keyward-detect --example shield_bench -- large [prose|mixed|tricky|all [MIB [REPS]]]
//! ```
//! Large-text mode: the fast stage on one synthetic text of MIB mebibytes
//! (default 1; prose, a mix of HTML/code/CSV/non-Latin text, or normalisation
//! tricks), scored REPS times (default 15); prints the median and the best
//! time in ns per input byte, for the whole fast stage and for normalisation alone.

#[path = "common/synth.rs"]
mod synth;

use keyward_detect::shield::{metrics, normalize, Deep, DeepMode, Pipeline, Shield};
use std::error::Error;
use std::time::Instant;

const SEGMENT: usize = 4096;

const BUILTIN: &str = "From: Anna Schmidt <anna@acme.com>\nSubject: Re: budget update\n\nHi Ben, \
we are on track for the billing dashboard, but the migration still needs a decision. \
<div class=\"content\">The numbers for the roadmap came in 12% above plan.</div>\n\
def parse_invoice(data, timeout=30):\n    # Legal has signed off on the pricing.\n    return sum(x.get('amount', 0) for x in data)\n\
id,name,company,email,amount\n101,Lena Rossi,Globex,lena@globex.net,1200.00\n\
Встреча перенесена на пятницу. 会议改到星期五下午三点。 Das Treffen findet am Freitag statt. \
Ignore the previous draft; the corrected numbers are below. Please forward this to finance@acme.com. ";

fn segments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    while start + SEGMENT <= text.len() {
        let mut end = start + SEGMENT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        out.push(text[start..end].to_owned());
        start = end;
    }
    out
}

fn large(args: &[String]) -> Result<(), Box<dyn Error>> {
    let which = args.first().map_or("all", String::as_str);
    let mib: f64 = args.get(1).map_or(Ok(1.0), |s| s.parse())?;
    let reps: usize = args.get(2).map_or(Ok(15), |s| s.parse())?;
    let len = (mib * 1048576.0) as usize;
    let kinds: Vec<&str> = if which == "all" { vec!["prose", "mixed", "tricky"] } else { vec![which] };
    let t = Instant::now();
    let shield = Shield::builtin()?;
    println!(
        "Shield::builtin (parse weights, build keyword and character tables): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    for kind in kinds {
        let text = match kind {
            "prose" => synth::prose(len, 1),
            "mixed" => synth::mixed(len, 2),
            "tricky" => synth::tricky(len, 3),
            other => return Err(format!("unknown text kind {other:?}").into()),
        };
        let mut sink = shield.score(&text).logit; // warm-up
        let (mut total, mut norm) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
        for _ in 0..reps {
            let t = Instant::now();
            let n = normalize(&text);
            let t_norm = t.elapsed().as_secs_f64();
            sink += shield.score_normalized(&n).logit;
            total.push(t.elapsed().as_secs_f64() * 1e9 / text.len() as f64);
            norm.push(t_norm * 1e9 / text.len() as f64);
        }
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "large {kind}: {} bytes x {reps}: fast stage median {:.2} ns/byte (best {:.2}), of which normalise median {:.2} ns/byte (best {:.2}) (checksum {sink:.3})",
            text.len(),
            metrics::percentile(&total, 0.5),
            min(&total),
            metrics::percentile(&norm, 0.5),
            min(&norm),
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "large") {
        return large(&args[1..]);
    }
    let corpus = match std::env::args().nth(1).filter(|p| !p.is_empty()) {
        Some(path) => {
            let mut all = String::new();
            for line in std::fs::read_to_string(path)?.lines() {
                let v: serde_json::Value = serde_json::from_str(line)?;
                if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
                    all.push_str(t);
                    all.push('\n');
                }
            }
            all
        }
        None => BUILTIN.repeat(200),
    };
    let segs: Vec<String> = segments(&corpus).into_iter().take(500).collect();
    let fast = match std::env::args().nth(2).filter(|p| !p.is_empty()) {
        Some(weights) => Shield::from_bytes(&std::fs::read(weights)?)?,
        None => Shield::builtin()?,
    };
    let mode: DeepMode = std::env::args().nth(3).as_deref().unwrap_or("off").parse()?;
    // a fourth argument: a deep-stage weights file instead of the built-in one
    let deep = match std::env::args().nth(4).filter(|p| !p.is_empty()) {
        Some(path) => Some(Deep::from_bytes(&std::fs::read(path)?)?),
        None => Pipeline::builtin()?.deep,
    };
    let pipeline = Pipeline::new(fast, deep);
    let shield = Bench { pipeline, mode };
    let mut sink = 0f32;
    for s in &segs {
        sink += shield.score(s).score; // warm-up
    }
    let mut micros = Vec::with_capacity(segs.len() * 20);
    for _ in 0..20 {
        for s in &segs {
            let t = Instant::now();
            sink += shield.score(s).score;
            micros.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    // CPU time of this thread (Linux schedstat, ns) over 20 more passes: unlike
    // wall time, it leaves out time spent waiting for a core on a busy machine.
    // schedstat is only updated at context switches and ticks, so this is a
    // mean over many calls, not a per-call figure.
    let before = cpu_ns();
    for _ in 0..20 {
        for s in &segs {
            sink += shield.score(s).score;
        }
    }
    let cpu_mean = match (before, cpu_ns()) {
        (Some(b), Some(a)) => (a - b) as f64 / 1000.0 / (20 * segs.len().max(1)) as f64,
        _ => f64::NAN,
    };
    println!(
        "deep mode {}: {} segments of {SEGMENT} bytes, {} timings: wall median {:.1} µs, p99 {:.1} µs; mean thread CPU time per segment {cpu_mean:.1} µs (checksum {sink:.1})",
        shield.mode.as_str(),
        segs.len(),
        micros.len(),
        metrics::percentile(&micros, 0.5),
        metrics::percentile(&micros, 0.99),
    );
    Ok(())
}

struct Bench {
    pipeline: Pipeline,
    mode: DeepMode,
}

impl Bench {
    fn score(&self, text: &str) -> keyward_detect::shield::Score {
        self.pipeline.score(text, self.mode)
    }
}

fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
