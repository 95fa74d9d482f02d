//! `keyward audit verify` and `audit pubkey` through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use keyward_core::audit::{AuditEntry, Line, Signer};
use keyward_core::crypto::MasterKey;

#[test]
fn exported_chains_verify_offline_and_tampering_names_the_sequence() {
    let (gw, _) = Gateway::init("http://127.0.0.1:9");
    let cfg = gw.config.to_str().unwrap().to_string();
    let o = cli(&["audit", "pubkey", "--config", &cfg], None);
    assert!(o.status.success(), "{}", text(&o));
    let pubkey = String::from_utf8_lossy(&o.stdout).trim().to_string();
    // the installation's signer (derived from its master key) makes a chain
    let master = MasterKey::from_hex(&std::fs::read_to_string(gw.data_dir().join("master.key")).unwrap()).unwrap();
    let signer = Signer::from_seed(&master.derive_seed("audit-sign")).unwrap();
    assert_eq!(signer.public_hex(), pubkey);
    let mut lines = Vec::new();
    let mut prev: Option<AuditEntry> = None;
    for i in 0..6 {
        let e = AuditEntry::next(
            prev.as_ref(),
            format!("2026-11-27T10:00:0{i}Z"),
            "tok_x:owner".into(),
            None,
            "key.revoke".into(),
            vec![format!("key_{i}")],
            serde_json::json!({"reason": "test"}),
        );
        lines.push(Line::Entry(e.clone()));
        if i % 3 == 2 {
            lines.push(Line::Checkpoint(signer.checkpoint(&e, "2026-11-27T10:01:00Z".into())));
        }
        prev = Some(e);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let export: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
    std::fs::write(&file, &export).unwrap();
    let f = file.to_str().unwrap();
    let o = cli(&["audit", "verify", "--from-file", f, "--pubkey", &pubkey], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("6 entries"));
    // an edit in entry 2
    std::fs::write(&file, export.replacen("key_1", "key_9", 1)).unwrap();
    let o = cli(&["audit", "verify", "--from-file", f, "--pubkey", &pubkey], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("sequence number 2"), "{}", text(&o));
    // a deleted entry
    let kept: Vec<&str> = export.lines().filter(|l| !l.contains("key_3")).collect();
    std::fs::write(&file, kept.join("\n")).unwrap();
    let o = cli(&["audit", "verify", "--from-file", f, "--pubkey", &pubkey], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("sequence number 4"), "{}", text(&o));
}
