//! Working-tree scans: walking, hidden files, binary files, long lines,
//! archives and their limits.

#![expect(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

mod common;

use common::*;
use keyward_scanner::{scan, Kind, ScanArgs, Source};
use std::io::Write;
use std::path::Path;

fn args(dir: &Path) -> ScanArgs {
    ScanArgs { paths: vec![dir.to_path_buf()], no_progress: true, threads: 2, ..ScanArgs::default() }
}

fn paths(dir: &Path) -> Vec<(String, u64)> {
    let report = scan(&args(dir)).unwrap();
    let prefix = format!("{}/", dir.display());
    report.findings.iter().map(|f| (f.path.replace(&prefix, ""), f.line)).collect()
}

#[test]
fn hidden_env_and_ignored_files_are_scanned_but_git_internals_are_not() {
    let d = tempfile::tempdir().unwrap();
    let k = api_key(1);
    write(d.path(), ".env", format!("ANTHROPIC_API_KEY={k}\n"));
    write(d.path(), ".config/secrets.yaml", format!("key: '{k}'\n"));
    write(d.path(), ".gitignore", ".env\nbuild/\n");
    write(d.path(), "build/out.js", format!("a=\"{k}\""));
    write(d.path(), ".git/config", format!("[x]\n k = {k}\n"));
    write(d.path(), "sub/.git/objects/xx", &k);
    let mut got = paths(d.path());
    got.sort();
    assert_eq!(got, vec![(".config/secrets.yaml".into(), 1), (".env".into(), 1), ("build/out.js".into(), 1)]);
}

#[test]
fn exit_codes_and_report() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "clean.txt", "nothing here\n");
    let r = scan(&args(d.path())).unwrap();
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.files, 1);
    write(d.path(), "dirty.txt", format!("{}\n", api_key(2)));
    let r = scan(&args(d.path())).unwrap();
    assert_eq!(r.exit_code(), 1);
    assert_eq!(r.findings[0].fingerprint, fingerprint(&api_key(2)));
    assert_eq!(r.findings[0].source, Source::File);
    let mut a = args(d.path());
    a.paths = vec![d.path().join("does-not-exist")];
    let r = scan(&a).unwrap();
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn all_four_kinds() {
    let d = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for (i, kind) in Kind::ALL.iter().enumerate() {
        text.push_str(&format!("k{i}={}\n", key(*kind, 10 + i as u64)));
    }
    write(d.path(), "keys.env", &text);
    let r = scan(&args(d.path())).unwrap();
    let kinds: Vec<Kind> = r.findings.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, Kind::ALL.to_vec());
}

#[test]
fn binary_files_and_very_long_lines() {
    let d = tempfile::tempdir().unwrap();
    let k = api_key(3);
    let mut bin: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    bin.extend_from_slice(b"\0\0");
    bin.extend_from_slice(k.as_bytes());
    bin.extend_from_slice(b"\0\x01\x02");
    bin.extend((0..=255u8).cycle().take(10_000));
    write(d.path(), "app.bin", &bin);
    // a 6 MB minified bundle on one line, the key near the end
    let mut js = String::with_capacity(6_000_200);
    while js.len() < 6_000_000 {
        js.push_str("var a=function(b){return b+1};");
    }
    js.push_str(&format!("const k=`{k}`;"));
    write(d.path(), "bundle.min.js", &js);
    let r = scan(&args(d.path())).unwrap();
    assert_eq!(r.findings.len(), 2, "{:?}", r.findings);
    let bundle = r.findings.iter().find(|f| f.path.ends_with("bundle.min.js")).unwrap();
    assert_eq!(bundle.line, 1);
    assert_eq!(bundle.column as usize, js.find(&k).unwrap() + 1);
}

#[test]
fn inline_allow_suppresses_one_line() {
    let d = tempfile::tempdir().unwrap();
    let k = api_key(4);
    write(d.path(), "a.py", format!("TEST_KEY = '{k}'  # keyward:allow\nREAL = '{k}'\n"));
    let r = scan(&args(d.path())).unwrap();
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].line, 2);
    assert_eq!(r.suppressed_inline, 1);
}

#[test]
fn baseline_suppresses_by_fingerprint() {
    let d = tempfile::tempdir().unwrap();
    let a = api_key(5);
    let b = api_key(6);
    write(d.path(), "a.txt", format!("{a}\n{b}\n"));
    let base = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(base.path(), format!("# accepted\n{}\n", fingerprint(&a))).unwrap();
    let mut args = args(d.path());
    args.baseline = Some(base.path().to_path_buf());
    let r = scan(&args).unwrap();
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].fingerprint, fingerprint(&b));
    assert_eq!(r.suppressed_by_baseline, 1);
    // write a baseline, then everything is accepted
    let written = d.path().join("baseline.json");
    args.baseline = None;
    args.write_baseline = Some(written.clone());
    assert_eq!(scan(&args).unwrap().exit_code(), 0);
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(!text.contains(&a) && !text.contains(&b));
    args.write_baseline = None;
    args.baseline = Some(written);
    let r = scan(&args).unwrap();
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.suppressed_by_baseline, 2);
    // a malformed baseline is an error, not an empty baseline
    std::fs::write(base.path(), "not-a-fingerprint\n").unwrap();
    args.baseline = Some(base.path().to_path_buf());
    assert!(scan(&args).is_err());
}

fn zip_bytes(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn tar_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn archives_nested_zip_jar_apk_tar_gzip() {
    let d = tempfile::tempdir().unwrap();
    let k = api_key(7);
    let line = format!("key={k}\n");
    let inner_zip = zip_bytes(&[("config/app.properties", line.as_bytes())], zip::CompressionMethod::Deflated);
    write(d.path(), "lib.jar", &inner_zip);
    write(d.path(), "app.apk", zip_bytes(&[("assets/x.json", line.as_bytes())], zip::CompressionMethod::Stored));
    let tar = tar_bytes(&[("pkg/inner.zip", &inner_zip), ("pkg/.env", line.as_bytes())]);
    write(d.path(), "release.tar", &tar);
    write(d.path(), "release.tar.gz", gzip(&tar));
    write(d.path(), "notes.txt.gz", gzip(line.as_bytes()));
    let mut got = paths(d.path());
    got.sort();
    let want: Vec<(String, u64)> = [
        "app.apk!assets/x.json",
        "lib.jar!config/app.properties",
        "notes.txt.gz",
        "release.tar!pkg/.env",
        "release.tar!pkg/inner.zip!config/app.properties",
        "release.tar.gz!pkg/.env",
        "release.tar.gz!pkg/inner.zip!config/app.properties",
    ]
    .iter()
    .map(|p| (p.to_string(), 1))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn archive_depth_limit() {
    let d = tempfile::tempdir().unwrap();
    let k = api_key(8);
    let mut data = zip_bytes(&[("k.txt", format!("{k}\n").as_bytes())], zip::CompressionMethod::Deflated);
    for _ in 0..6 {
        data = zip_bytes(&[("n.zip", &data)], zip::CompressionMethod::Deflated);
    }
    write(d.path(), "deep.zip", &data);
    let mut a = args(d.path());
    a.max_archive_depth = 8;
    assert_eq!(scan(&a).unwrap().findings.len(), 1);
    a.max_archive_depth = 3;
    let r = scan(&a).unwrap();
    assert!(r.findings.is_empty());
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn archive_size_limit_stops_a_bomb() {
    let d = tempfile::tempdir().unwrap();
    let k = api_key(9);
    let zeros = vec![0u8; 8 << 20];
    let mut after = zeros.clone();
    after.extend_from_slice(format!(" {k} ").as_bytes());
    let bomb = zip_bytes(&[("a", &zeros), ("b", &zeros), ("c", &after)], zip::CompressionMethod::Deflated);
    assert!(bomb.len() < 200_000);
    write(d.path(), "bomb.zip", &bomb);
    let mut a = args(d.path());
    a.max_archive_size = 4 << 20;
    let r = scan(&a).unwrap();
    assert!(r.findings.is_empty());
    assert!(r.warnings.iter().any(|w| w.contains("limit")), "{:?}", r.warnings);
    a.max_archive_size = 64 << 20;
    assert_eq!(scan(&a).unwrap().findings.len(), 1);
}

#[test]
fn corrupt_archives_are_scanned_as_bytes() {
    let d = tempfile::tempdir().unwrap();
    let k = api_key(10);
    let mut fake = b"PK\x03\x04garbage ".to_vec();
    fake.extend_from_slice(k.as_bytes());
    fake.extend_from_slice(b" more");
    write(d.path(), "broken.zip", &fake);
    let mut gz = vec![0x1f, 0x8b, 0x08, 0, 0];
    gz.extend_from_slice(format!(" {k} ").as_bytes());
    write(d.path(), "broken.gz", &gz);
    let r = scan(&args(d.path())).unwrap();
    assert_eq!(r.findings.len(), 2, "{:?} {:?}", r.findings, r.warnings);
}
