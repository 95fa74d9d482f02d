//! Command-line arguments of `keyward scan` and `keyward hook install`.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Human-readable, secrets redacted.
    #[default]
    Text,
    /// One JSON document with every finding.
    Json,
    /// SARIF 2.1.0 (code scanning).
    Sarif,
}

/// `keyward scan [PATH...]`: find Anthropic and keyward keys.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Exit status: 0 nothing found, 1 findings, 2 error.\n\
Suppress one line with an inline `keyward:allow` comment, or accepted findings with --baseline.")]
pub struct ScanArgs {
    /// Files or directories to scan (with --git or --staged: the repository).
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,

    /// Scan git history instead of files: every blob reachable from every ref
    /// (branches, tags, remotes, stash), once, and every commit and tag message.
    #[arg(long, conflicts_with = "staged")]
    pub git: bool,

    /// With --git: only commits not reachable from REV.
    #[arg(long, value_name = "REV", requires = "git")]
    pub since: Option<String>,

    /// Scan the changes staged for the next commit (used by the pre-commit hook).
    #[arg(long)]
    pub staged: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Write the report to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Suppress findings whose fingerprint is in FILE (a file written by
    /// --write-baseline, a `--format json` report, or one SHA-256 hex per line).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Write the fingerprints of all current findings to FILE (accepting them).
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,

    /// Worker threads (0: one per core).
    #[arg(long, short = 'j', value_name = "N", default_value_t = 0)]
    pub threads: usize,

    /// How deep to open archives inside archives (0: do not open archives).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_archive_depth: u32,

    /// Bytes to extract at most from one archive, nested ones included
    /// (suffixes K, M, G).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub max_archive_size: u64,

    /// Never show the progress bar (it is only shown on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

impl Default for ScanArgs {
    fn default() -> Self {
        ScanArgs {
            paths: vec![PathBuf::from(".")],
            git: false,
            since: None,
            staged: false,
            format: Format::Text,
            output: None,
            baseline: None,
            write_baseline: None,
            threads: 0,
            max_archive_depth: 5,
            max_archive_size: 256 << 20,
            no_progress: false,
        }
    }
}

/// `keyward hook install`: a git pre-commit hook that scans staged changes.
#[derive(Debug, Clone, Args)]
pub struct HookArgs {
    /// Repository to install into.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,

    /// Replace an existing pre-commit hook that keyward did not write (it is
    /// kept as `pre-commit.keyward-backup`).
    #[arg(long)]
    pub force: bool,

    /// Program the hook runs (default: this executable).
    #[arg(long, value_name = "PATH")]
    pub program: Option<PathBuf>,
}

/// `256M`, `1G`, `4096`, `64k`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix in {text:?} (use K, M or G)")),
            };
            (&t[..i], mult)
        }
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("not a size: {text:?}"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size too large: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("1T").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("-1").is_err());
    }
}
