//! Dump the fast stage's result for a fixed set of texts, one line each, so
//! that a change meant to leave scores alone can be checked bit for bit:
//!
//! ```text
//! cargo run --release -p keyward-detect --example shield_dump -- OUT.txt [DIR]
//! diff before.txt after.txt
//! ```
//! The texts: the `text` field of every row of `DIR/*.jsonl` (default
//! `/work/shared/data/prompt-injection`), 1 MiB of prose, 1 MiB of mixed
//! HTML/code/CSV/non-Latin text, 1 MiB of normalisation tricks (each also in
//! 64 KiB slices), and a few thousand short random and tricky strings. Each line
//! holds the logit (and its f32 bits), the deciding window, the window count,
//! the origin, and hashes of the normalised text (with payloads and flags) and of
//! its n-gram event stream, so that a change in normalisation or hashing shows
//! even where it does not move the highest window.

#[path = "common/synth.rs"]
mod synth;

use keyward_detect::shield::{features, normalize, Shield};
use std::collections::hash_map::DefaultHasher;
use std::error::Error;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

fn line(shield: &Shield, name: &str, text: &str, out: &mut String) {
    let n = normalize(text);
    let s = shield.score_normalized(&n);
    let mut h = DefaultHasher::new();
    n.text.hash(&mut h);
    n.payloads.hash(&mut h);
    (n.flags.invisible, n.flags.obfuscated).hash(&mut h);
    let norm_hash = h.finish();
    let mut e = DefaultHasher::new();
    let bits = shield.model().params.bits;
    for t in std::iter::once(&n.text).chain(n.payloads.iter()) {
        features::for_each_event(t.as_bytes(), bits, |pos, b| (pos, b).hash(&mut e));
    }
    let _ = writeln!(
        out,
        "{name}\t{:08x}\t{:.6}\t{:?}\t{}\t{:?}\t{norm_hash:016x}\t{:016x}",
        s.logit.to_bits(),
        s.logit,
        s.window,
        s.windows,
        s.origin,
        e.finish()
    );
}

fn main() -> Result<(), Box<dyn Error>> {
    let out_path = std::env::args().nth(1).ok_or("usage: shield_dump OUT.txt [DIR]")?;
    let dir = std::env::args().nth(2).unwrap_or_else(|| "/work/shared/data/prompt-injection".into());
    let shield = Shield::builtin()?;
    let mut out = String::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for f in &files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for (i, l) in std::fs::read_to_string(f)?.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l)?;
            if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
                line(&shield, &format!("{name}:{i}"), t, &mut out);
            }
        }
    }
    const MIB: usize = 1 << 20;
    let big = [("prose", synth::prose(MIB, 1)), ("mixed", synth::mixed(MIB, 2)), ("tricky", synth::tricky(MIB, 3))];
    for (name, text) in &big {
        line(&shield, &format!("{name}:whole"), text, &mut out);
        let mut start = 0;
        let mut k = 0;
        while start < text.len() {
            let mut end = (start + 65536).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            line(&shield, &format!("{name}:slice{k}"), &text[start..end], &mut out);
            start = end;
            k += 1;
        }
    }
    let mut r = synth::Rng::new(99);
    for i in 0..3000 {
        let len = r.below(600);
        line(&shield, &format!("random:{i}"), &synth::random(len, r.next()), &mut out);
    }
    for i in 0..1000 {
        let len = r.below(2000);
        let seed = r.next();
        let text = match i % 3 {
            0 => synth::tricky(len, seed),
            1 => synth::mixed(len, seed),
            _ => synth::prose(len, seed),
        };
        line(&shield, &format!("short:{i}"), &text, &mut out);
    }
    std::fs::write(&out_path, out)?;
    eprintln!("wrote {out_path}");
    Ok(())
}
