//! `--git` history scans and `--staged` scans on repositories built with the
//! `git` CLI: branches, tags (annotated, with a key in the message), stash, a
//! key added then deleted, a key moved, commit messages, `--since`.

#![expect(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

mod common;

use common::*;
use keyward_scanner::{scan, Kind, ScanArgs, Source};
use std::path::Path;

fn history(dir: &Path, since: Option<&str>) -> keyward_scanner::Report {
    scan(&ScanArgs {
        paths: vec![dir.to_path_buf()],
        git: true,
        since: since.map(str::to_string),
        no_progress: true,
        threads: 2,
        ..ScanArgs::default()
    })
    .unwrap()
}

struct Repo {
    dir: tempfile::TempDir,
    deleted: String,
    kept: String,
    branch: String,
    stashed: String,
    tag_msg: String,
    commit_msg: String,
    c_add: String,
    c_branch: String,
    c_msg: String,
}

fn build() -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_repo(d);
    let deleted = api_key(101);
    let kept = key(Kind::AnthropicAdminKey, 102);
    let branch = key(Kind::KeywardVirtualKey, 103);
    let stashed = api_key(104);
    let tag_msg = key(Kind::KeywardAdminToken, 105);
    let commit_msg = api_key(106);

    write(d, "README.md", "hello\n");
    commit_all(d, "initial", "2024-01-01T00:00:00Z");
    write(d, "config/.env", format!("ANTHROPIC_API_KEY={deleted}\n"));
    write(d, "admin.txt", format!("{kept}\n"));
    let c_add = commit_all(d, "add config", "2024-01-02T00:00:00Z");
    // the same blob moved: no second finding, the blob is scanned once
    git(d, &["mv", "admin.txt", "moved-admin.txt"]);
    commit_all(d, "move", "2024-01-03T00:00:00Z");
    std::fs::remove_file(d.join("config/.env")).unwrap();
    commit_all(d, "remove key", "2024-01-04T00:00:00Z");
    let c_msg = commit_all(d, &format!("oops {commit_msg} in a message"), "2024-01-05T00:00:00Z");
    git(d, &["tag", "-a", "v1", "-m", &format!("release with {tag_msg}")]);
    git(d, &["checkout", "-q", "-b", "feature"]);
    write(d, "feature.js", format!("const k = \"{branch}\";\n"));
    let c_branch = commit_all(d, "feature", "2024-01-06T00:00:00Z");
    git(d, &["checkout", "-q", "main"]);
    write(d, "wip.txt", format!("{stashed}\n"));
    git(d, &["add", "wip.txt"]);
    git(d, &["stash", "push", "-q", "-m", "wip"]);
    // a second stash so that the first one lives only in the stash reflog
    write(d, "README.md", "changed\n");
    git(d, &["stash", "push", "-q", "-m", "wip2"]);
    Repo { dir, deleted, kept, branch, stashed, tag_msg, commit_msg, c_add, c_branch, c_msg }
}

#[test]
fn full_history() {
    let repo = build();
    let r = history(repo.dir.path(), None);
    let by_fp = |s: &str| r.findings.iter().filter(|f| f.fingerprint == fingerprint(s)).collect::<Vec<_>>();

    let deleted = by_fp(&repo.deleted);
    assert_eq!(deleted.len(), 1, "{:#?}", r.findings);
    assert_eq!(deleted[0].path, "config/.env");
    assert_eq!(deleted[0].source, Source::GitBlob);
    assert_eq!(deleted[0].line, 1);
    let git = deleted[0].git.as_ref().unwrap();
    assert_eq!(git.commit, repo.c_add);
    assert_eq!(git.author_date, "2024-01-02T00:00:00Z");
    assert_eq!(deleted[0].in_current_tree, Some(false));

    let kept = by_fp(&repo.kept);
    assert_eq!(kept.len(), 1, "moved blob is scanned once: {kept:#?}");
    assert_eq!(kept[0].path, "admin.txt");
    assert_eq!(kept[0].in_current_tree, Some(true));

    let branch = by_fp(&repo.branch);
    assert_eq!(branch.len(), 1);
    assert_eq!(branch[0].path, "feature.js");
    assert_eq!(branch[0].git.as_ref().unwrap().commit, repo.c_branch);
    // HEAD is main, which does not have it
    assert_eq!(branch[0].in_current_tree, Some(false));

    let stashed = by_fp(&repo.stashed);
    assert!(!stashed.is_empty(), "stash@{{1}} is reachable only through the stash reflog");
    assert_eq!(stashed[0].path, "wip.txt");

    // the commit, and the two stash index commits whose messages quote its subject
    let msg = by_fp(&repo.commit_msg);
    assert_eq!(msg.len(), 3, "{msg:#?}");
    assert!(msg.iter().all(|f| f.source == Source::CommitMessage));

    let tag = by_fp(&repo.tag_msg);
    assert_eq!(tag.len(), 1);
    assert_eq!(tag[0].source, Source::TagMessage);
    assert_eq!(tag[0].path, "tag refs/tags/v1");

    assert_eq!(r.findings.len(), 8, "{:#?}", r.findings);
    assert_eq!(r.exit_code(), 1);
    assert!(r.commits >= 6);
}

#[test]
fn since_limits_to_new_commits() {
    let repo = build();
    let d = repo.dir.path();
    let r = history(d, Some("main"));
    let fps: Vec<_> = r.findings.iter().map(|f| f.fingerprint.clone()).collect();
    // only what is not reachable from main: the feature branch and the stashes
    assert!(fps.contains(&fingerprint(&repo.branch)));
    assert!(fps.contains(&fingerprint(&repo.stashed)));
    assert!(!fps.contains(&fingerprint(&repo.deleted)));
    assert!(!r
        .findings
        .iter()
        .any(|f| f.fingerprint == fingerprint(&repo.commit_msg) && f.path.ends_with(&repo.c_msg)));
    assert!(!fps.contains(&fingerprint(&repo.kept)));
}

#[test]
fn packed_repository_reads_the_same() {
    let repo = build();
    let d = repo.dir.path();
    git(d, &["gc", "-q", "--aggressive"]);
    let r = history(d, None);
    assert_eq!(r.findings.len(), 8, "{:#?}", r.findings);
    // packed history plus a loose commit on top: both read paths in one scan
    let late = api_key(107);
    write(d, "late.txt", format!("{late}\n"));
    commit_all(d, "late", "2024-02-01T00:00:00Z");
    let r = history(d, None);
    assert_eq!(r.findings.len(), 9, "{:#?}", r.findings);
    let f = r.findings.iter().find(|f| f.fingerprint == fingerprint(&late)).unwrap();
    assert_eq!(f.path, "late.txt");
    assert_eq!(f.in_current_tree, Some(true));
}

#[test]
fn empty_and_missing_repositories() {
    let d = tempfile::tempdir().unwrap();
    init_repo(d.path());
    let r = history(d.path(), None);
    assert_eq!(r.exit_code(), 0);
    let not_repo = tempfile::tempdir().unwrap();
    let res = scan(&ScanArgs {
        paths: vec![not_repo.path().to_path_buf()],
        git: true,
        no_progress: true,
        ..ScanArgs::default()
    });
    assert!(res.is_err());
}

#[test]
fn staged_changes_only() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    init_repo(d);
    let old = api_key(201);
    let new = api_key(202);
    write(d, "old.txt", format!("{old}\n"));
    write(d, "README.md", "x\n");
    commit_all(d, "old", "2024-01-01T00:00:00Z");
    let staged = |d: &Path| {
        scan(&ScanArgs { paths: vec![d.to_path_buf()], staged: true, no_progress: true, ..ScanArgs::default() })
            .unwrap()
    };
    // unchanged committed files are not re-reported
    assert_eq!(staged(d).exit_code(), 0);
    // an unstaged change is not looked at
    write(d, "README.md", format!("{new}\n"));
    assert_eq!(staged(d).exit_code(), 0);
    git(d, &["add", "README.md"]);
    let r = staged(d);
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].path, "README.md");
    assert_eq!(r.findings[0].source, Source::Staged);
}
