//! The `keyward-scan` binary as a user meets it: exit codes, report formats
//! (SARIF validated against the vendored 2.1.0 schema), no full secret in any
//! output, and the pre-commit hook blocking a real `git commit`.

#![expect(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

mod common;

use common::*;
use keyward_detect::leak::Kind;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn run(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = scan_bin().args(args).current_dir(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture() -> (tempfile::TempDir, Vec<String>) {
    let d = tempfile::tempdir().unwrap();
    let keys: Vec<String> = Kind::ALL.iter().enumerate().map(|(i, k)| key(*k, 300 + i as u64)).collect();
    write(d.path(), "src/app.js", format!("fetch('/v1?key={}&x=1')\n", keys[0]));
    write(d.path(), "dir with space/ünï.env", format!("ADMIN={}\n", keys[1]));
    write(d.path(), ".env", format!("KW={}\nKWA={}\n", keys[2], keys[3]));
    (d, keys)
}

#[test]
fn exit_codes() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a.txt", "clean\n");
    assert_eq!(run(&["scan", "."], d.path()).0, 0);
    write(d.path(), "b.txt", format!("{}\n", api_key(1)));
    assert_eq!(run(&["scan", "."], d.path()).0, 1);
    assert_eq!(run(&["scan", "--no-such-flag"], d.path()).0, 2);
    assert_eq!(run(&["scan", "--git", "."], d.path()).0, 2, "not a repository");
    assert_eq!(run(&["scan", "missing-dir"], d.path()).0, 2);
}

#[test]
fn no_output_format_contains_a_full_secret() {
    let (d, keys) = fixture();
    for format in ["text", "json", "sarif"] {
        let (code, out, err) = run(&["scan", "--format", format, "."], d.path());
        assert_eq!(code, 1, "{format}: {err}");
        for k in &keys {
            assert!(!out.contains(k.as_str()) && !err.contains(k.as_str()), "{format} leaks a secret");
            assert!(out.contains(&fingerprint(k)), "{format} lacks a fingerprint");
            assert!(out.contains(&k[..12]), "{format} lacks the redacted prefix");
        }
    }
}

#[test]
fn json_report_fields() {
    let (d, keys) = fixture();
    let (_, out, _) = run(&["scan", "--format", "json", "."], d.path());
    let doc: Value = serde_json::from_str(&out).unwrap();
    let findings = doc["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 4);
    let app = findings.iter().find(|f| f["path"].as_str().unwrap().ends_with("app.js")).unwrap();
    assert_eq!(app["kind"], "anthropic-api-key");
    assert_eq!(app["fingerprint"], fingerprint(&keys[0]));
    assert_eq!(app["line"], 1);
    assert_eq!(app["column"], 16);
    assert_eq!(app["redacted"], format!("{}…{}", &keys[0][..12], &keys[0][104..]));
    assert_eq!(doc["summary"]["findings"], 4);
}

#[test]
fn sarif_validates_against_the_2_1_0_schema() {
    let schema: Value = serde_json::from_str(include_str!("data/sarif-2.1.0-rtm.5.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();

    let (d, _) = fixture();
    // with a git history too: message findings have logical locations
    init_repo(d.path());
    commit_all(d.path(), &format!("msg {}", api_key(9)), "2024-02-03T04:05:06Z");
    for args in [vec!["scan", "--format", "sarif", "."], vec!["scan", "--format", "sarif", "--git", "."]] {
        let (code, out, err) = run(&args, d.path());
        assert_eq!(code, 1, "{err}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        let results = doc["runs"][0]["results"].as_array().unwrap();
        assert!(!results.is_empty());
        for r in results {
            assert!(r["partialFingerprints"]["secretSha256/v1"].is_string());
        }
    }
    // the clean case is valid too
    let clean = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&["scan", "--format", "sarif", "."], clean.path());
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert!(validator.is_valid(&doc));
    // and the validator does reject a broken log
    let mut broken = doc.clone();
    broken["version"] = Value::from("2.0.0");
    assert!(!validator.is_valid(&broken));
}

#[test]
fn sarif_uris_are_relative_references() {
    let (d, _) = fixture();
    let (_, out, _) = run(&["scan", "--format", "sarif", "."], d.path());
    let doc: Value = serde_json::from_str(&out).unwrap();
    let uris: Vec<String> = doc["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap().to_string())
        .collect();
    assert!(uris.contains(&"dir%20with%20space/%C3%BCn%C3%AF.env".to_string()), "{uris:?}");
    assert!(uris.contains(&"src/app.js".to_string()), "{uris:?}");
}

#[test]
fn output_file_and_threads() {
    let (d, _) = fixture();
    let report = d.path().join("report.json");
    let (code, out, _) =
        run(&["scan", "-j", "1", "--format", "json", "-o", report.to_str().unwrap(), "src", ".env"], d.path());
    assert_eq!(code, 1);
    assert!(out.is_empty());
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(doc["findings"].as_array().unwrap().len(), 3);
}

#[test]
fn no_progress_bar_when_not_a_terminal() {
    let (d, _) = fixture();
    let (_, _, err) = run(&["scan", "."], d.path());
    assert!(!err.contains('\r') && !err.contains("\x1b["), "{err:?}");
}

fn commit(dir: &Path, msg: &str) -> std::process::Output {
    Command::new("git")
        .args(["commit", "-q", "-m", msg])
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.test")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.test")
        .output()
        .unwrap()
}

#[test]
fn pre_commit_hook_blocks_a_key_and_honours_allow_and_baseline() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    init_repo(d);
    write(d, "README.md", "hi\n");
    commit_all(d, "init", "2024-01-01T00:00:00Z");
    let (code, out, err) = run(&["hook", "install"], d);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pre-commit"));
    // installing twice is fine (our own hook is replaced)
    assert_eq!(run(&["hook", "install"], d).0, 0);

    let k = api_key(400);
    write(d, "config.py", format!("KEY = '{k}'\n"));
    git(d, &["add", "config.py"]);
    let blocked = commit(d, "add key");
    assert!(!blocked.status.success(), "the hook must block the commit");
    let stderr = String::from_utf8_lossy(&blocked.stderr).into_owned() + &String::from_utf8_lossy(&blocked.stdout);
    assert!(stderr.contains("config.py"), "{stderr}");
    assert!(!stderr.contains(&k));

    write(d, "config.py", format!("KEY = '{k}'  # keyward:allow\n"));
    git(d, &["add", "config.py"]);
    assert!(commit(d, "allowed").status.success());

    let k2 = api_key(401);
    write(d, "other.py", format!("KEY = '{k2}'\n"));
    git(d, &["add", "other.py"]);
    assert!(!commit(d, "blocked").status.success());
    std::fs::write(d.join(".keyward-baseline"), format!("{}\n", fingerprint(&k2))).unwrap();
    assert!(commit(d, "accepted by baseline").status.success());
}

#[test]
fn hook_install_refuses_to_overwrite_a_foreign_hook() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    init_repo(d);
    write(d, ".git/hooks/pre-commit", "#!/bin/sh\necho mine\n");
    let (code, _, err) = run(&["hook", "install"], d);
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(run(&["hook", "install", "--force"], d).0, 0);
    assert!(d.join(".git/hooks/pre-commit.keyward-backup").exists());
}
