//! The audit log through the real binary: what the gateway writes, export and
//! offline verification, and tampering with exported files and with the
//! database rows themselves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

fn entries(gw: &mut Gateway) -> Vec<Value> {
    let o = gw.kw(&["audit", "tail", "-n", "1000", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn verify_file(path: &std::path::Path, pubkey: &str) -> (i32, String) {
    let o = cli(&["audit", "verify", "--from-file", path.to_str().unwrap(), "--pubkey", pubkey], None);
    (o.status.code().unwrap_or(-1), text(&o))
}

#[test]
fn admin_actions_are_audited_exported_and_verified_offline() {
    let upstream_key = fake_upstream_key();
    let m = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&m.url);
    gw.set_config("audit", "checkpoint_every", "4");
    let sink = gw.data_dir().join("audit-sink.jsonl");
    gw.set_config("audit", "jsonl_path", &format!("{:?}", sink.to_str().unwrap()));
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    syslog.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    gw.set_config("audit", "syslog", &format!("\"udp://{}\"", syslog.local_addr().unwrap()));
    gw.start();
    let (key_id, secret) = gw.provision("billing", "prod", &upstream_key);
    let o = gw.kw(&["key", "rotate", &key_id, "--grace", "0s", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let rotated_secret = json_out(&o)["secret"].as_str().unwrap().to_string();
    assert!(gw.kw(&["key", "suspend", &key_id]).status.success());
    assert!(gw.kw(&["key", "resume", &key_id]).status.success());
    assert!(gw.kw(&["key", "update", &key_id, "--rpm", "77"]).status.success());
    let o = gw.kw(&["token", "create", "--role", "auditor", "--name", "siem", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let auditor = json_out(&o);
    let auditor_secret = auditor["secret"].as_str().unwrap().to_string();
    assert!(gw.kw(&["key", "revoke", &key_id, "--reason", "left the team"]).status.success());

    let all = entries(&mut gw);
    let actions: Vec<&str> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in [
        "install.init",
        "token.create",
        "server.start",
        "service.create",
        "upstream.create",
        "key.create",
        "key.rotate",
        "key.suspend",
        "key.resume",
        "key.update",
        "key.revoke",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let revoke = all.iter().find(|e| e["action"] == "key.revoke").unwrap();
    assert!(revoke["actor"].as_str().unwrap().starts_with("tok_"), "{revoke}");
    assert!(revoke["actor"].as_str().unwrap().ends_with(":owner"), "{revoke}");
    assert_eq!(revoke["source"], "127.0.0.1");
    assert_eq!(revoke["targets"][0], key_id.as_str());
    assert_eq!(revoke["summary"]["reason"], "left the team");
    let update = all.iter().find(|e| e["action"] == "key.update").unwrap();
    assert_eq!(update["summary"]["changed"]["policy"]["to"]["rpm"], 77, "{update}");
    let token_create = all.iter().filter(|e| e["action"] == "token.create").nth(1).unwrap();
    assert_eq!(token_create["targets"][0], auditor["id"]);
    assert_eq!(token_create["summary"]["role"], "auditor");
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    // syslog got the entries written since the start, as RFC 5424 messages carrying the entry
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.iter().any(|m: &String| m.contains("\"key.revoke\"")) {
        let n = syslog.recv(&mut buf).expect("syslog messages within 20 s");
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(got.iter().all(|m| m.starts_with("<85>1 ") && m.contains(" keyward - audit [keyward seq=")), "{got:?}");
    assert!(got.iter().any(|m| m.contains("\"key.create\"")), "{got:?}");
    for m in &got {
        let json = &m[m.find("] ").unwrap() + 2..];
        let line: Value = serde_json::from_str(json).unwrap();
        assert_eq!(line["type"], "entry");
        for secret in [&secret, &upstream_key, &gw.token] {
            assert!(!m.contains(secret.as_str()));
        }
    }

    // the auditor reads the log; no secret is in it
    let o =
        cli(&["audit", "tail", "-n", "1000", "--json", "--server", &gw.admin_url, "--token", &auditor_secret], None);
    assert!(o.status.success(), "{}", text(&o));
    let log = text(&o);
    for s in [&secret, &rotated_secret, &upstream_key, &gw.token, &auditor_secret] {
        assert!(!log.contains(s.as_str()), "a secret is in the audit log");
    }

    // export and verify offline with only the public key
    let o = gw.kw(&["audit", "pubkey"]);
    assert!(o.status.success(), "{}", text(&o));
    let pubkey = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(pubkey.len(), 64);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    let o = gw.kw(&["audit", "export", "--format", "jsonl", "-o", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let export = std::fs::read_to_string(&file).unwrap();
    assert!(export.lines().last().unwrap().contains("\"checkpoint\""), "an export ends with a checkpoint");
    let (code, out) = verify_file(&file, &pubkey);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("intact: {} entries", all.len())), "{out}");
    let o = gw.kw(&["audit", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // tampering with the exported file, each named by its first bad sequence number
    let lines: Vec<&str> = export.lines().collect();
    let entry_line = |seq: u64| lines.iter().position(|l| l.contains(&format!("\"seq\":{seq},\""))).unwrap();
    let write = |ls: &[String]| std::fs::write(&file, ls.join("\n") + "\n").unwrap();
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    // edit
    let mut edited = owned.clone();
    let i = entry_line(5);
    edited[i] = edited[i].replacen("\"actor\":\"", "\"actor\":\"x", 1);
    write(&edited);
    let (code, out) = verify_file(&file, &pubkey);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sequence number 5"), "{out}");
    // deletion
    let mut deleted = owned.clone();
    deleted.remove(entry_line(3));
    write(&deleted);
    let (code, out) = verify_file(&file, &pubkey);
    assert_eq!((code, out.contains("sequence number 3")), (1, true), "{out}");
    // insertion (a copy of entry 2 after it)
    let mut inserted = owned.clone();
    inserted.insert(entry_line(2) + 1, owned[entry_line(2)].clone());
    write(&inserted);
    let (code, out) = verify_file(&file, &pubkey);
    assert_eq!((code, out.contains("sequence number 3")), (1, true), "{out}");
    // reordering
    let mut reordered = owned.clone();
    reordered.swap(entry_line(6), entry_line(7));
    write(&reordered);
    let (code, out) = verify_file(&file, &pubkey);
    assert_eq!((code, out.contains("sequence number 6")), (1, true), "{out}");
    // truncation after the last checkpoint: the tail is no longer signed
    let truncated: Vec<String> = owned[..owned.len() - 2].to_vec();
    write(&truncated);
    let (code, out) = verify_file(&file, &pubkey);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not covered by a signed checkpoint"), "{out}");
    // a key that did not sign it
    write(&owned);
    let wrong = "0".repeat(63) + "1";
    let (code, _) = verify_file(&file, &wrong);
    assert_eq!(code, 1);

    // the file sink holds the same chain; after a stop it ends signed
    let log = gw.stop();
    for s in [&secret, &rotated_secret, &upstream_key, &gw.token, &auditor_secret] {
        assert!(!log.contains(s.as_str()), "a secret is in the server's output");
    }
    let (code, out) = verify_file(&sink, &pubkey);
    assert_eq!(code, 0, "{out}");
    let sink_text = std::fs::read_to_string(&sink).unwrap();
    assert!(sink_text.contains("\"server.stop\""));
    assert!(sink_text.lines().last().unwrap().contains("\"checkpoint\""));
}

/// Run `audit verify` against a restarted server after editing the database.
fn verify_live(gw: &mut Gateway) -> (i32, String) {
    gw.start();
    let o = gw.kw(&["audit", "verify"]);
    gw.stop();
    (o.status.code().unwrap_or(-1), text(&o))
}

#[test]
fn edits_deletions_insertions_and_reorderings_of_database_rows_are_detected() {
    let upstream_key = fake_upstream_key();
    let m = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&m.url);
    gw.set_config("audit", "checkpoint_every", "3");
    gw.start();
    let (key_id, _) = gw.provision("billing", "prod", &upstream_key);
    for _ in 0..3 {
        assert!(gw.kw(&["key", "suspend", &key_id]).status.success());
        assert!(gw.kw(&["key", "resume", &key_id]).status.success());
    }
    gw.stop();
    let db = gw.db_path();
    let backup = std::fs::read(&db).unwrap();
    let sql = |stmt: &str| {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(stmt).unwrap();
    };
    let restore = || {
        let _ = std::fs::remove_file(db.with_extension("db-wal"));
        let _ = std::fs::remove_file(db.with_extension("db-shm"));
        std::fs::write(&db, &backup).unwrap();
    };
    let (code, out) = verify_live(&mut gw);
    assert_eq!(code, 0, "{out}");

    restore();
    sql("UPDATE audit_log SET summary = '{\"reason\":null,\"x\":1}' WHERE seq = 8");
    let (code, out) = verify_live(&mut gw);
    assert_eq!((code, out.contains("sequence number 8")), (1, true), "edit: {out}");

    restore();
    sql("DELETE FROM audit_log WHERE seq = 6");
    let (code, out) = verify_live(&mut gw);
    assert_eq!((code, out.contains("sequence number 6")), (1, true), "deletion: {out}");

    restore();
    // make room after 4 and put a copy of 4 there
    sql("UPDATE audit_log SET seq = seq + 1000 WHERE seq > 4; UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000; \
         INSERT INTO audit_log SELECT 5, ts, actor, source, action, targets, summary, prev_hash, hash FROM audit_log WHERE seq = 4");
    let (code, out) = verify_live(&mut gw);
    assert_eq!((code, out.contains("sequence number 5")), (1, true), "insertion: {out}");

    restore();
    sql("UPDATE audit_log SET seq = -1 WHERE seq = 9; UPDATE audit_log SET seq = 9 WHERE seq = 10; \
         UPDATE audit_log SET seq = 10 WHERE seq = -1");
    let (code, out) = verify_live(&mut gw);
    assert_eq!((code, out.contains("sequence number 9")), (1, true), "reordering: {out}");

    restore();
    let (code, out) = verify_live(&mut gw);
    assert_eq!(code, 0, "restored: {out}");
}
