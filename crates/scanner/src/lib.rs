//! `keyward scan` and `keyward hook install`: the I/O side of the leak scanner.
//!
//! Matching is [`keyward_detect::leak`] (pure, no I/O); this crate feeds it:
//! working trees ([`fs`], parallel walk, hidden files included, `.git` skipped),
//! archives ([`archive`]: zip/jar/apk, tar, gzip, nested, with depth and byte
//! limits), git history and staged changes ([`git`], through gix), and writes
//! the report ([`output`]: text, JSON, SARIF 2.1.0).
//!
//! The binary wires two entry points: [`run_scan`] for `keyward scan` and
//! [`run_hook_install`] for `keyward hook install`. Inventory checks and
//! revocation (`--check-inventory`, `--revoke`) plug in through
//! [`FindingHandler`] and [`run_scan_with`], so this crate needs no admin client.

mod archive;
mod args;
pub mod baseline;
mod engine;
mod finding;
mod fs;
mod git;
pub mod hook;
mod output;
mod progress;

pub use args::{parse_size, Format, HookArgs, ScanArgs};
pub use engine::ALLOW_MARKER;
pub use finding::{Classification, Finding, GitInfo, Source, Status};
pub use keyward_detect::leak::Kind;

use engine::{Limits, Sink};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Exit status: nothing found.
pub const EXIT_CLEAN: i32 = 0;
/// Exit status: at least one finding.
pub const EXIT_FINDINGS: i32 = 1;
/// Exit status: usage or runtime error (also: something could not be read and
/// nothing was found, since a key may hide in what was not read).
pub const EXIT_ERROR: i32 = 2;

/// The seam for `--check-inventory` and `--revoke`.
///
/// `run_scan_with` calls [`FindingHandler::handle`] once with every finding
/// that survived the baseline and inline suppression, before the report is
/// written. An implementation looks each secret up (keyward keys by the
/// inventory's keyed digest of [`Finding::secret`], upstream keys by
/// [`Finding::fingerprint`]), sets [`Finding::classification`], and may act —
/// revoke a live virtual key, mark an upstream key compromised — recording
/// what it did in [`Classification::action`].
pub trait FindingHandler {
    fn handle(&self, findings: &mut [Finding]) -> anyhow::Result<()>;
}

/// Everything a scan found and visited.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub suppressed_by_baseline: u64,
    pub suppressed_inline: u64,
    pub files: u64,
    pub bytes: u64,
    pub commits: u64,
    pub blobs: u64,
    pub elapsed: Duration,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl Report {
    pub fn exit_code(&self) -> i32 {
        if !self.findings.is_empty() {
            EXIT_FINDINGS
        } else if !self.errors.is_empty() {
            EXIT_ERROR
        } else {
            EXIT_CLEAN
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Baseline(#[from] baseline::BaselineError),
    #[error("{0}")]
    Git(String),
    #[error("{0}")]
    Usage(String),
}

fn threads(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Scan as `args` say and return the report (no output is written).
pub fn scan(args: &ScanArgs) -> Result<Report, ScanError> {
    let started = Instant::now();
    let accepted = match &args.baseline {
        Some(path) => baseline::load(path)?,
        None => Default::default(),
    };
    let limits = Limits { max_depth: args.max_archive_depth, max_archive_bytes: args.max_archive_size };
    let n = threads(args.threads);
    let sink = Sink::default();
    let mut report = Report::default();
    let show = !args.no_progress && args.format == Format::Text && !args.staged;
    progress::with_progress(&sink, show, || -> Result<(), ScanError> {
        if args.git {
            for repo in &args.paths {
                let stats = git::scan_history(&sink, limits, repo, args.since.as_deref(), n).map_err(ScanError::Git)?;
                report.commits += stats.commits;
                report.blobs += stats.blobs;
            }
        } else if args.staged {
            let repo = args.paths.first().map_or(std::path::Path::new("."), |p| p.as_path());
            git::scan_staged(&sink, limits, repo).map_err(ScanError::Git)?;
        } else {
            fs::scan_paths(&sink, limits, &args.paths, n);
        }
        Ok(())
    })?;
    report.files = sink.files.load(Ordering::Relaxed);
    report.bytes = sink.bytes.load(Ordering::Relaxed);
    report.suppressed_inline = sink.allowed.load(Ordering::Relaxed);
    let (mut findings, warnings, errors) = sink.into_parts();
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    if let Some(path) = &args.write_baseline {
        baseline::write(path, &findings)?;
        report.suppressed_by_baseline = findings.len() as u64;
        findings.clear();
    }
    let before = findings.len();
    findings.retain(|f| !accepted.contains(&f.fingerprint));
    report.suppressed_by_baseline += (before - findings.len()) as u64;
    report.findings = findings;
    report.warnings = warnings;
    report.errors = errors;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Scan one in-memory object (opening archives up to `max_archive_depth`
/// levels and `max_archive_size` bytes) and return its findings. For embedding
/// and fuzzing; `name` is the display path.
pub fn scan_buffer(name: &str, data: &[u8], max_archive_depth: u32, max_archive_size: u64) -> Vec<Finding> {
    let sink = Sink::default();
    let limits = Limits { max_depth: max_archive_depth, max_archive_bytes: max_archive_size };
    let origin = engine::Origin { path: name.to_string(), source: Source::File, git: None };
    let mut budget = max_archive_size;
    engine::scan_bytes(&sink, limits, &origin, data, 0, &mut budget);
    sink.into_parts().0
}

/// `keyward scan`: scan, write the report, return the exit status
/// ([`EXIT_CLEAN`], [`EXIT_FINDINGS`], [`EXIT_ERROR`]).
pub fn run_scan(args: ScanArgs) -> anyhow::Result<i32> {
    run_scan_with(args, None)
}

/// [`run_scan`] with a [`FindingHandler`] (inventory check, revocation).
pub fn run_scan_with(args: ScanArgs, handler: Option<&dyn FindingHandler>) -> anyhow::Result<i32> {
    let mut report = scan(&args)?;
    if let Some(h) = handler {
        h.handle(&mut report.findings)?;
    }
    let mut sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    match args.format {
        Format::Text => output::text(&report, &mut sink)?,
        Format::Json => output::json(&report, &mut sink)?,
        Format::Sarif => output::sarif(&report, &mut sink)?,
    }
    sink.flush()?;
    drop(sink);
    summarize(&args, &report);
    Ok(report.exit_code())
}

/// Warnings, errors and a one-line summary on standard error.
fn summarize(args: &ScanArgs, report: &Report) {
    let mut err = std::io::stderr().lock();
    for w in &report.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    for e in &report.errors {
        let _ = writeln!(err, "error: {e}");
    }
    if args.format != Format::Text && args.output.is_none() {
        return;
    }
    let what = if args.git {
        format!("{} commits, {} blobs", report.commits, report.blobs)
    } else {
        format!("{} files", report.files)
    };
    let mut suppressed = String::new();
    if report.suppressed_by_baseline + report.suppressed_inline > 0 {
        suppressed = format!(
            " ({} accepted by baseline, {} allowed inline)",
            report.suppressed_by_baseline, report.suppressed_inline
        );
    }
    let _ = writeln!(
        err,
        "keyward scan: {} finding(s){suppressed} in {what}, {:.1} MB, {:.2}s",
        report.findings.len(),
        report.bytes as f64 / 1e6,
        report.elapsed.as_secs_f64()
    );
    if report.findings.iter().any(|f| f.kind.is_upstream()) {
        let _ = writeln!(
            err,
            "Revoke first, clean up later: a leaked Anthropic key must be revoked in the Console \
             (or rotated with `keyward upstream rotate`) before it is removed from the code."
        );
    }
}

/// `keyward hook install`: returns the exit status.
pub fn run_hook_install(args: HookArgs) -> anyhow::Result<i32> {
    let path = hook::install(&args)?;
    println!("installed pre-commit hook: {}", path.display());
    Ok(EXIT_CLEAN)
}
