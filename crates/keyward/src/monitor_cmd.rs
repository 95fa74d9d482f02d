//! `keyward monitor ...`: the anomaly detectors offline. Glue only: the engine and
//! the trace reader are `keyward_monitor`.
//!
//! Exit codes: 0 when the replay ran (alerts or not); 2 on usage, I/O, config or
//! trace errors (via `anyhow` in `main`).

use anyhow::{Context, Result};
use clap::Subcommand;
use keyward_monitor::{replay, MonitorConfig};
use std::io::{BufReader, Write};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum MonitorCmd {
    /// Run the detectors over a recorded JSONL trace in simulated time (no server).
    Replay {
        /// The trace: `key`, `request`, `upstream_usage` and `presented_revoked` lines, in time order.
        #[arg(long)]
        trace: PathBuf,
        /// keyward.toml whose `[monitor]` table sets the thresholds (defaults without it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print `{"alerts":[{"rule","key","upstream","at","severity"}]}`.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: MonitorCmd) -> Result<u8> {
    match cmd {
        MonitorCmd::Replay { trace, config, json } => {
            let cfg = match &config {
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                    MonitorConfig::from_keyward_toml(&text).with_context(|| format!("in {}", path.display()))?
                }
                None => MonitorConfig::default(),
            };
            // Validate before reading a possibly large trace.
            cfg.settings().context("the [monitor] settings")?;
            let file = std::fs::File::open(&trace).with_context(|| format!("opening {}", trace.display()))?;
            let out = replay(BufReader::with_capacity(1 << 20, file), &cfg)
                .with_context(|| format!("replaying {}", trace.display()))?;
            let mut stdout = std::io::stdout().lock();
            if json {
                serde_json::to_writer(&mut stdout, &out)?;
                writeln!(stdout)?;
            } else {
                for a in &out.alerts {
                    let subject = match (&a.key, &a.upstream) {
                        (Some(k), _) => format!("key {k}"),
                        (None, Some(u)) => format!("upstream {u}"),
                        (None, None) => "-".into(),
                    };
                    writeln!(stdout, "{}  {:<8}  {:<17}  {subject}", a.at, a.severity.as_str(), a.rule.as_str())?;
                }
                writeln!(stdout, "{} alert(s)", out.alerts.len())?;
            }
            Ok(0)
        }
    }
}
