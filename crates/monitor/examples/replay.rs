//! `keyward monitor replay` without the rest of keyward: the same library call,
//! for the benchmark runner when the binary is not built.
//!
//! ```text
//! cargo run --release -p keyward-monitor --example replay -- --trace FILE [--config keyward.toml]
//! ```

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark tool: any failure aborts the run")]

use keyward_monitor::{replay, MonitorConfig};
use std::io::BufReader;

fn main() {
    let mut trace = None;
    let mut config = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--trace" => trace = args.next(),
            "--config" => config = args.next(),
            "--json" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let cfg = match config {
        Some(p) => MonitorConfig::from_keyward_toml(&std::fs::read_to_string(p).unwrap()).unwrap(),
        None => MonitorConfig::default(),
    };
    let f = std::fs::File::open(trace.expect("--trace FILE")).unwrap();
    let started = std::time::Instant::now();
    let out = replay(BufReader::with_capacity(1 << 20, f), &cfg).unwrap();
    eprintln!("replayed in {:.2} s", started.elapsed().as_secs_f64());
    println!("{}", serde_json::to_string(&out).unwrap());
}
