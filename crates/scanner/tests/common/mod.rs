//! Shared helpers for the scanner's integration tests. Every key is generated
//! at run time (nothing key-shaped is committed).
#![allow(dead_code)]

use keyward_detect::leak::synth::{self, Rng};
use keyward_detect::leak::Kind;
use std::path::Path;
use std::process::{Command, Output};

pub fn key(kind: Kind, seed: u64) -> String {
    synth::key(kind, &mut Rng::new(seed))
}

pub fn api_key(seed: u64) -> String {
    key(Kind::AnthropicApiKey, seed)
}

pub fn fingerprint(secret: &str) -> String {
    keyward_detect::leak::fingerprint(secret.as_bytes())
}

pub fn write(dir: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, content).unwrap();
}

/// Run `git` in `dir` with a fixed identity and no user/system config.
pub fn git(dir: &Path, args: &[&str]) -> Output {
    git_at(dir, args, "2024-01-01T00:00:00Z")
}

pub fn git_at(dir: &Path, args: &[&str], date: &str) -> Output {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.test")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.test")
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub fn init_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
}

pub fn commit_all(dir: &Path, msg: &str, date: &str) -> String {
    git_at(dir, &["add", "-A"], date);
    git_at(dir, &["commit", "-q", "--allow-empty", "-m", msg], date);
    let out = git(dir, &["rev-parse", "HEAD"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn scan_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keyward-scan"))
}
