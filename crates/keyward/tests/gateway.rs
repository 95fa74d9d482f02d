//! Black-box tests of the gateway core: the real binary, free ports, a temp
//! installation, the simulated upstream, and the official Python SDK.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::io::{Read, Write};

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn init_refuses_an_existing_installation_and_serve_checks_config() {
    let (gw, _) = Gateway::init("http://127.0.0.1:9");
    let dir = gw.data_dir();
    let before: Vec<(String, Vec<u8>)> = ["keyward.toml", "master.key", "admin.token"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect();
    let again = cli(&["init", "--data-dir", dir.to_str().unwrap()], None);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("already exists"));
    for (f, bytes) in &before {
        assert_eq!(&std::fs::read(dir.join(f)).unwrap(), bytes, "{f} changed");
    }
    use std::os::unix::fs::PermissionsExt;
    for f in ["master.key", "admin.token", "keyward.db"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
    }

    let cfg = gw.config.to_str().unwrap();
    let ok = cli(&["serve", "--config", cfg, "--check"], None);
    assert!(ok.status.success(), "{}", text(&ok));

    // a typo in the config is an error, never a silently ignored setting
    gw.append_config("\n[secrets]\ncache_tll = \"20s\"\n");
    let bad = cli(&["serve", "--config", cfg, "--check"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("cache_tll") || text(&bad).contains("duplicate"), "{}", text(&bad));
}

#[test]
fn serve_refuses_a_master_key_readable_by_others() {
    let (gw, _) = Gateway::init("http://127.0.0.1:9");
    use std::os::unix::fs::PermissionsExt;
    let mk = gw.data_dir().join("master.key");
    std::fs::set_permissions(&mk, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = gw.config.to_str().unwrap();
    for args in [vec!["serve", "--config", cfg, "--check"], vec!["serve", "--config", cfg]] {
        let out = cli(&args, None);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    }
}

#[test]
fn python_sdk_against_the_gateway() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.start();
    let (_, key) = gw.provision("billing", "prod", &upstream_key);
    let (dead_id, dead) = gw.create_key("billing", "prod");
    let o = gw.kw(&["key", "revoke", &dead_id, "--reason", "test"]);
    assert!(o.status.success(), "{}", text(&o));

    let script = repo_root().join("tests/python/sdk_check.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([&gw.data_url, &key, &dead])
        .output()
        .expect("python3 with the anthropic package (pip install -r tests/requirements.txt)");
    let t = text(&out);
    assert!(out.status.success() && t.contains("ALL OK"), "SDK check failed:\n{t}");

    // what reached the upstream: the injected key, never the client's credential
    let seen = http("GET", &format!("{}/_mock/requests", mock.url), &[], b"").json();
    let seen = seen.as_array().unwrap();
    assert!(seen.len() >= 10, "{seen:?}");
    for r in seen {
        assert_eq!(r["key_accepted"], true, "{r}");
        assert_eq!(r["authorization_present"], false, "{r}");
        let names: Vec<&str> = r["header_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for n in &names {
            assert!(
                [
                    "host",
                    "content-type",
                    "content-length",
                    "accept",
                    "anthropic-version",
                    "anthropic-beta",
                    "x-api-key"
                ]
                .contains(n),
                "header {n} was forwarded: {names:?}"
            );
        }
    }
    gw.stop();
}

#[test]
fn errors_use_the_anthropic_envelope() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.start();
    let (id, key) = gw.provision("search", "dev", &upstream_key);
    let base = gw.data_url.clone();

    // unknown, malformed, revoked, missing: one answer (no oracle)
    let (rid, revoked) = gw.create_key("search", "dev");
    assert!(gw.kw(&["key", "revoke", &rid]).status.success());
    let unknown = format!("{}{}", &key[..key.len() - 6], "AAAAAA");
    let mut bodies = Vec::new();
    for k in [unknown.as_str(), "kw_dev_short", revoked.as_str(), "sk-ant-api03-nope"] {
        let r = post_messages(&base, k, MSG);
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["type"], "authentication_error");
        bodies.push(r.body);
    }
    let none = http("POST", &format!("{base}/v1/messages"), &[("content-type", "application/json")], MSG.as_bytes());
    assert_eq!(none.status, 401);
    bodies.push(none.body);
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "401 bodies differ");

    // a working key
    let ok = post_messages(&base, &key, MSG);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.header("request-id").unwrap().starts_with("req_"));
    assert!(ok.header("anthropic-ratelimit-requests-limit").is_some());

    // malformed JSON
    let r = post_messages(&base, &key, "{\"model\": ");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (400, Some("invalid_request_error")));
    let r = post_messages(&base, &key, "[1,2]");
    assert_eq!(r.status, 400);

    // over 32 MiB declared: refused without the body being sent
    let r = http(
        "POST",
        &format!("{base}/v1/messages"),
        &[("x-api-key", &key), ("content-type", "application/json"), ("content-length", "40000000")],
        b"{}",
    );
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (413, Some("request_too_large")));

    // over 32 MiB in chunks, no length declared: refused once the limit is crossed
    let (host, _) = split_url(&base);
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(s, "POST /v1/messages HTTP/1.1\r\nhost: {host}\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..40 {
        if write!(s, "{:x}\r\n", chunk.len())
            .and_then(|_| s.write_all(&chunk))
            .and_then(|_| s.write_all(b"\r\n"))
            .is_err()
        {
            break; // the gateway answered and closed: it did not read it all
        }
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let r = parse_response(&raw);
    assert_eq!(r.status, 413);

    // paths outside the allowlist are not forwarded
    let r = http("GET", &format!("{base}/v1/organizations/api_keys"), &[("x-api-key", &key)], b"");
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (404, Some("not_found_error")));

    // upstream errors pass through as they are
    let r = post_messages(
        &base,
        &key,
        r#"{"model":"mock-error-429","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
    );
    assert_eq!((r.status, r.header("retry-after")), (429, Some("7")));
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    let r = post_messages(
        &base,
        &key,
        r#"{"model":"mock-error-529","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
    );
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (529, Some("overloaded_error")));

    // a key of another environment has no upstream here: refused by policy, not forwarded
    let (_, prod_key) = gw.create_key("search", "prod");
    let r = post_messages(&base, &prod_key, MSG);
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (502, Some("api_error")));

    // health answers on both planes without credentials
    assert_eq!(http("GET", &format!("{base}/healthz"), &[], b"").status, 200);
    assert_eq!(http("GET", &format!("{base}/readyz"), &[], b"").status, 200);
    assert_eq!(http("POST", &format!("{base}/healthz"), &[], b"").status, 405);
    assert_eq!(http("GET", &format!("{}/healthz", gw.admin_url), &[], b"").status, 200);
    // any other path needs a key before anything else is looked at
    assert_eq!(http("GET", &format!("{base}/nowhere"), &[], b"").status, 401);
    // the admin plane needs a token
    assert_eq!(http("GET", &format!("{}/admin/v1/keys", gw.admin_url), &[], b"").status, 401);
    let _ = id;
    gw.stop();
}

#[test]
fn upstream_down_is_502_and_a_hung_upstream_is_504() {
    // nothing listens on the upstream address: 502
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (mut gw, _) = Gateway::init(&dead_url);
    gw.start();
    let (_, key) = gw.provision("svc", "dev", "sk-ant-test-unused");
    let r = post_messages(&gw.data_url, &key, MSG);
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (502, Some("api_error")));
    assert!(!r.text().contains("127.0.0.1"), "5xx bodies say nothing internal: {}", r.text());
    gw.stop();

    // an upstream that never answers: 504 after the response timeout
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.append_config("\n[upstream]\nresponse_timeout = \"1s\"\n");
    // the generated config already has an [upstream] table: rewrite it instead
    let c = std::fs::read_to_string(&gw.config).unwrap();
    let c = c.replace("\n[upstream]\nresponse_timeout = \"1s\"\n", "");
    let c = c.replace("[upstream]\n", "[upstream]\nresponse_timeout = \"1s\"\n");
    std::fs::write(&gw.config, c).unwrap();
    gw.start();
    let (_, key) = gw.provision("svc", "dev", &upstream_key);
    let r = post_messages(
        &gw.data_url,
        &key,
        r#"{"model":"mock-hang","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
    );
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (504, Some("api_error")));
    gw.stop();
}

#[test]
fn streams_pass_through_as_they_arrive() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.start();
    let (_, key) = gw.provision("chat", "dev", &upstream_key);
    let body =
        r#"{"model":"mock-slow-stream","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut s = connect_and_send(
        "POST",
        &format!("{}/v1/messages", gw.data_url),
        &[("x-api-key", &key), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")],
        body.as_bytes(),
    );
    // read until the first event has arrived: the rest of the stream (spaced
    // out by the upstream) must not have been waited for
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("event: message_start") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    let first = String::from_utf8_lossy(&got).to_string();
    assert!(first.contains("text/event-stream"), "{first}");
    assert!(!first.contains("message_stop"), "the whole stream was buffered before the first byte");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    got.extend_from_slice(&rest);
    let all = String::from_utf8_lossy(&got);
    for ev in ["message_start", "content_block_start", "content_block_delta", "message_delta", "message_stop"] {
        assert!(all.contains(&format!("event: {ev}")), "missing {ev}");
    }
    gw.stop();
}

#[test]
fn metering_records_every_request_and_survives_disconnects() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.start();
    let (key_id, key) = gw.provision("meter", "dev", &upstream_key);
    let base = gw.data_url.clone();

    // "Hello there, gateway!" is 21 characters: the mock counts ceil(21/4) = 6
    // input tokens and answers 10 words (10 output tokens)
    assert_eq!(post_messages(&base, &key, MSG).status, 200);
    let stream = MSG.replace("\"max_tokens\":32", "\"max_tokens\":32,\"stream\":true");
    let r = post_messages(&base, &key, &stream);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("message_stop"));
    // an unknown model: recorded with cost unknown, not zero
    let unpriced = MSG.replace("claude-sonnet-4-6", "claude-nonexistent-9");
    assert_eq!(post_messages(&base, &key, &unpriced).status, 200);
    // a client that goes away mid-stream
    let slow = r#"{"model":"mock-slow-stream","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"Hello there, gateway!"}]}"#;
    let mut s = connect_and_send(
        "POST",
        &format!("{base}/v1/messages"),
        &[("x-api-key", &key), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")],
        slow.as_bytes(),
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("content_block_delta") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);
    // a refused request after authentication is recorded too
    assert_eq!(post_messages(&base, &key, "{oops").status, 400);

    // clean shutdown drains the queue: everything is in the database
    gw.stop();
    let db = rusqlite_rows(&gw.db_path());
    assert_eq!(db.len(), 5, "{db:?}");
    let by_model = |m: &str| db.iter().filter(|r| r.model.as_deref() == Some(m)).collect::<Vec<_>>();
    let sonnet = by_model("claude-sonnet-4-6");
    assert_eq!(sonnet.len(), 2);
    for r in &sonnet {
        assert_eq!((r.input, r.output, r.status), (6, 10, 200), "{r:?}");
        let expected = (6.0 * 3.0 + 10.0 * 15.0) / 1e6;
        assert!((r.cost.unwrap() - expected).abs() < 1e-12, "{r:?}");
        assert_eq!(r.key_id, key_id);
    }
    assert_eq!(sonnet.iter().filter(|r| r.streamed).count(), 1);
    let unknown = by_model("claude-nonexistent-9");
    assert_eq!(unknown.len(), 1);
    assert!(unknown[0].cost.is_none(), "unknown model must have unknown cost");
    let cut = by_model("mock-slow-stream");
    assert_eq!(cut.len(), 1);
    assert!(cut[0].disconnected && cut[0].streamed, "{:?}", cut[0]);
    assert_eq!(cut[0].input, 6, "usage from message_start is kept");
    let bad: Vec<_> = db.iter().filter(|r| r.status == 400).collect();
    assert_eq!(bad.len(), 1);

    // and `keyward usage` reports it per key
    gw.start();
    let o = gw.kw(&["usage", "--since", "1h", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = v.as_array().unwrap().iter().find(|r| r["key_id"] == key_id.as_str()).unwrap();
    assert_eq!(row["requests"], 5);
    assert_eq!(row["output_tokens"].as_u64().unwrap(), 10 + 10 + 10 + cut[0].output);
    assert!(row["cost_usd"].as_f64().unwrap() > 0.0);
    gw.stop();
}

#[derive(Debug)]
struct Row {
    key_id: String,
    model: Option<String>,
    status: i64,
    input: u64,
    output: u64,
    cost: Option<f64>,
    streamed: bool,
    disconnected: bool,
}

fn rusqlite_rows(path: &std::path::Path) -> Vec<Row> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c
        .prepare("SELECT key_id, model, status, input_tokens, output_tokens, cost_usd, streamed, client_disconnected FROM usage ORDER BY seq")
        .unwrap();
    st.query_map([], |r| {
        Ok(Row {
            key_id: r.get(0)?,
            model: r.get(1)?,
            status: r.get(2)?,
            input: r.get::<_, i64>(3)? as u64,
            output: r.get::<_, i64>(4)? as u64,
            cost: r.get(5)?,
            streamed: r.get(6)?,
            disconnected: r.get(7)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn revocation_is_effective_when_the_command_returns() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.start();
    let (id, key) = gw.provision("rev", "stg", &upstream_key);
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 200);
    let o = gw.kw(&["key", "revoke", &id, "--reason", "leaked"]);
    assert!(o.status.success(), "{}", text(&o));
    // no restart, no wait: the very next request is refused
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 401);
    let o = gw.kw(&["key", "show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["status"].as_str(), v["status_reason"].as_str()), (Some("revoked"), Some("leaked")));
    // still refused after a restart (state is in the store)
    gw.stop();
    gw.start();
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 401);
    gw.stop();
}

#[test]
fn management_cli_lists_and_filters() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.start();
    gw.provision("alpha", "dev", &upstream_key);
    let o = gw.kw(&["service", "add", "beta", "--owner", "team-b"]);
    assert!(o.status.success());
    gw.create_key("beta", "dev");
    gw.create_key("beta", "prod");

    let o = gw.kw(&["key", "list", "--json", "--service", "beta"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(v.as_array().unwrap().iter().all(|k| k["owner"] == "team-b" && k.get("secret").is_none()));
    let o = gw.kw(&["key", "list", "--json", "--env", "prod"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let o = gw.kw(&["key", "list"]);
    assert!(String::from_utf8_lossy(&o.stdout).lines().count() == 4, "{}", text(&o));
    let o = gw.kw(&["upstream", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["ref"], "local:dev-main");
    assert!(v[0]["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    let o = gw.kw(&["upstream", "add", "byref", "--env", "stg", "--ref", "env:ANTHROPIC_KEY_STG", "--json"]);
    assert!(o.status.success(), "{}", text(&o));

    // refusals exit 1 with a clear message; a service needs an owner
    let o = gw.kw(&["service", "add", "alpha", "--owner", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already exists"));
    let o = gw.kw(&["key", "create", "--service", "nope", "--env", "dev"]);
    assert_eq!(o.status.code(), Some(1));
    let o = gw.kw(&["key", "create", "--service", "alpha", "--env", "qa"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("unknown environment"));
    // the same through --server/--token instead of --config
    let o = cli(&["service", "list", "--json", "--server", &gw.admin_url, "--token", &gw.token.clone()], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&["service", "list", "--server", &gw.admin_url, "--token", "kwa_wrong"], None);
    assert_eq!(o.status.code(), Some(1));
    // the admin API documents itself
    let r = http("GET", &format!("{}/admin/v1/openapi.json", gw.admin_url), &[], b"");
    assert_eq!(r.json()["openapi"], "3.1.0");
    gw.stop();
}

/// DESIGN.md invariant 1: no secret appears anywhere after the response that created it.
#[test]
fn no_secret_leaks_into_logs_responses_or_the_database() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _init_text) = Gateway::init(&mock.url);
    gw.start();
    let (id, key) = gw.provision("leaky", "dev", &upstream_key);
    let (id2, key2) = gw.create_key("leaky", "dev");
    let master = std::fs::read_to_string(gw.data_dir().join("master.key")).unwrap().trim().to_string();
    let token = gw.token.clone();

    // exercise every path that could echo a credential
    let mut responses = String::new();
    for body in [MSG.to_string(), MSG.replace("\"max_tokens\":32", "\"max_tokens\":32,\"stream\":true"), "{bad".into()]
    {
        responses.push_str(&post_messages(&gw.data_url, &key, &body).text());
    }
    for k in [key2.as_str(), "kw_dev_garbage", &upstream_key, &token] {
        let r = post_messages(&gw.data_url, k, MSG);
        responses.push_str(&format!("{:?}{}", r.headers, r.text()));
    }
    let r = http("GET", &format!("{}/metrics", gw.admin_url), &[("authorization", &format!("Bearer {token}"))], b"");
    responses.push_str(&r.text());
    for cmd in [
        vec!["key", "list", "--json"],
        vec!["key", "show", id.as_str(), "--json"],
        vec!["upstream", "list", "--json"],
        vec!["usage", "--json"],
        vec!["service", "list"],
    ] {
        gw.kw(&cmd);
    }
    assert!(gw.kw(&["key", "revoke", &id2]).status.success());
    responses.push_str(&post_messages(&gw.data_url, &key2, MSG).text());
    let server_out = gw.stop();
    let mock_out = mock.proc.output();
    let mut db = String::new();
    for f in ["keyward.db", "keyward.db-wal", "keyward.db-shm"] {
        if let Ok(b) = std::fs::read(gw.data_dir().join(f)) {
            db.push_str(&String::from_utf8_lossy(&b));
        }
    }
    assert!(server_out.contains("keyward is serving"), "the server log was captured");
    assert!(db.contains(&id), "the database was read");
    let places = [
        ("server output", &server_out),
        ("mock output", &mock_out),
        ("responses", &responses),
        ("cli output after creation", &gw.cli_log),
        ("database", &db),
    ];
    for (what, hay) in places {
        for (name, secret) in [
            ("virtual key", key.as_str()),
            ("second virtual key", key2.as_str()),
            ("upstream key", upstream_key.as_str()),
            ("admin token", token.as_str()),
            ("master key", master.as_str()),
        ] {
            assert!(!hay.contains(secret), "{name} found in {what}");
            // nor a long piece of it
            let mid = &secret[secret.len() / 2 - 8..secret.len() / 2 + 8];
            assert!(!hay.contains(mid), "part of the {name} found in {what}");
        }
    }
}

#[test]
fn master_key_can_come_from_a_secret_reference() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.start();
    let (_, key) = gw.provision("m", "dev", &upstream_key);
    gw.stop();
    // move the master key out of the directory and into the environment
    let mk_path = gw.data_dir().join("master.key");
    let master = std::fs::read_to_string(&mk_path).unwrap().trim().to_string();
    std::fs::remove_file(&mk_path).unwrap();
    gw.set_config("master", "ref", "\"env:KW_TEST_MASTER_KEY\"");
    let cfg = gw.config.to_str().unwrap().to_string();
    let out = cli(&["serve", "--config", &cfg, "--check"], None);
    assert_eq!(out.status.code(), Some(2), "no master key anywhere: refused");
    assert!(!text(&out).contains(&master));
    gw.start_with_env(&[("KW_TEST_MASTER_KEY", &master)]);
    // the sealed upstream key opens with the same master key: requests work
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 200);
    let m =
        http("GET", &format!("{}/metrics", gw.admin_url), &[("authorization", &format!("Bearer {}", gw.token))], b"");
    assert!(m.text().contains("keyward_secret_fetches_total{outcome=\"ok\"} 1"), "{}", m.text());
    let log = gw.stop();
    assert!(!log.contains(&master));
}

#[test]
fn scan_classifies_findings_against_the_inventory_and_revokes_live_keys() {
    // an upstream key of the real shape, made at run time (never committed)
    let body: String = (0..93)
        .map(|i| {
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
                [(i * 7 + std::process::id() as usize) % 64] as char
        })
        .collect();
    let upstream_key = format!("sk-ant-api03-{body}AA");
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.start();
    let (live_id, live) = gw.provision("leaky", "dev", &upstream_key);
    let (dead_id, dead) = gw.create_key("leaky", "dev");
    assert!(gw.kw(&["key", "revoke", &dead_id]).status.success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.env"), format!("KEY={live}\nOLD={dead}\nANTHROPIC_API_KEY={upstream_key}\n"))
        .unwrap();
    let cfg = gw.config.to_str().unwrap().to_string();
    let path = dir.path().to_str().unwrap().to_string();
    let o = cli(&["scan", &path, "--format", "json", "--no-progress", "--check-inventory", "--config", &cfg], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json_out(&o);
    let all = v.to_string();
    for s in [&live, &dead, &upstream_key] {
        assert!(!all.contains(s.as_str()), "the report never carries a secret");
    }
    let findings = v["findings"].as_array().unwrap_or_else(|| v.as_array().unwrap());
    let class = |kind_id: &str| {
        findings
            .iter()
            .find(|f| f["classification"]["id"] == kind_id)
            .map(|f| f["classification"]["status"].as_str().unwrap().to_string())
    };
    assert_eq!(class(&live_id).as_deref(), Some("live"));
    assert_eq!(class(&dead_id).as_deref(), Some("revoked"));
    assert!(findings.iter().any(|f| f["classification"]["status"] == "upstream"), "{v}");
    assert_eq!(post_messages(&gw.data_url, &live, MSG).status, 200, "classification alone changes nothing");

    let o = cli(&["scan", &path, "--format", "json", "--no-progress", "--revoke", "--config", &cfg], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&format!("revoked {live_id}")));
    assert_eq!(post_messages(&gw.data_url, &live, MSG).status, 401, "revoked at once");
    let show = json_out(&gw.kw(&["key", "show", &live_id, "--json"]));
    assert!(show["status_reason"].as_str().unwrap().contains("found by keyward scan"));
    // the upstream key is marked compromised (and keeps serving until rotated)
    assert!(text(&o).contains("upstream key dev-main marked compromised"), "{}", text(&o));
    let ups = json_out(&gw.kw(&["upstream", "list", "--json"]));
    assert_eq!(ups[0]["status"], "compromised", "{ups}");
    let (_, other) = gw.create_key("leaky", "dev");
    assert_eq!(post_messages(&gw.data_url, &other, MSG).status, 200, "no outage before the rotation");
    // both steps are audited, with the token that ran the scan
    let o = gw.kw(&["audit", "tail", "-n", "100", "--json"]);
    let entries: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let revoke = entries.iter().find(|e| e["action"] == "key.revoke" && e["targets"][0] == live_id.as_str()).unwrap();
    assert!(revoke["summary"]["reason"].as_str().unwrap().contains("app.env"), "{revoke}");
    let marked = entries.iter().find(|e| e["action"] == "upstream.compromised").expect("audited");
    assert!(marked["summary"]["found_in"].as_str().unwrap().ends_with("app.env"), "{marked}");
    assert!(marked["actor"].as_str().unwrap().ends_with(":owner"));
    assert!(!entries.iter().any(|e| e.to_string().contains(&upstream_key)));
    // and a critical alert says what to do
    let alerts = json_out(&gw.kw(&["alerts", "--open", "--json"]));
    let alert = alerts.as_array().unwrap().iter().find(|a| a["rule"] == "upstream_compromised").expect("alert");
    assert_eq!(alert["severity"], "critical");
    assert!(alert["summary"].as_str().unwrap().contains("keyward upstream rotate dev-main"), "{alert}");
    // rotating it clears the mark
    let o = gw.kw_stdin(&["upstream", "rotate", "dev-main", "--grace", "0s"], Some(&format!("{upstream_key}x")));
    assert!(o.status.success(), "{}", text(&o));
    let ups = json_out(&gw.kw(&["upstream", "list", "--json"]));
    assert_eq!(ups[0]["status"], "active", "{ups}");
    gw.stop();
}

#[test]
fn a_value_rotated_at_the_source_is_used_within_one_ttl_and_the_previous_one_covers_a_race() {
    let (key_a, key_b) = (fake_upstream_key(), format!("{}-b", fake_upstream_key()));
    // the upstream accepts only A: B is "not yet active" at Anthropic
    let mock = mock(&key_a);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.set_config("secrets", "cache_ttl", "\"5s\"");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("anthropic.key");
    std::fs::write(&file, &key_a).unwrap();
    gw.start();
    assert!(gw.kw(&["service", "add", "s", "--owner", "o"]).status.success());
    let r = format!("file:{}", file.display());
    assert!(gw.kw(&["upstream", "add", "main", "--env", "dev", "--ref", &r]).status.success());
    let (_, key) = gw.create_key("s", "dev");
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 200);
    std::fs::write(&file, &key_b).unwrap();
    // within one TTL the new value is read; the upstream refuses it, and the
    // gateway retries once with the previous value, so clients see no error
    wait_for(15, || {
        let reqs = http("GET", &format!("{}/_mock/requests", mock.url), &[], b"").json();
        let refused = reqs.as_array().unwrap().iter().any(|r| r["key_accepted"] == false);
        let status = post_messages(&gw.data_url, &key, MSG).status;
        assert_eq!(status, 200, "a request failed during the source rotation");
        refused.then_some(())
    });
    // a body over 64 KiB is streamed upstream and has gone: the upstream's 401
    // reaches the client (it retries), and nothing is sent again without its body
    let big = MSG.replace("Hello there, gateway!", &"x".repeat(100_000));
    let r = post_messages(&gw.data_url, &key, &big);
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (401, Some("authentication_error")), "{}", r.text());
    let reqs = http("GET", &format!("{}/_mock/requests", mock.url), &[], b"").json();
    assert!(reqs.as_array().unwrap().iter().all(|r| r["body_bytes"] != 0), "a request went upstream without its body");
    let out = gw.stop();
    assert!(out.contains("retrying with the previous one"));
    assert!(!out.contains(&key_a) && !out.contains(&key_b));
}

/// Bodies over 64 KiB (keys that do not screen requests) are forwarded as they
/// arrive; their checks run on the way and a refused one never reaches the
/// upstream whole.
#[test]
fn large_bodies_stream_through_and_are_checked_on_the_way() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.start();
    let (_, key) = gw.provision("big", "dev", &upstream_key);
    let (_, sonnet_only) = gw.create_key_with("big", "dev", &["--models", "claude-sonnet-*"]);
    let base = gw.data_url.clone();
    let requests = || http("GET", &format!("{}/_mock/requests", mock.url), &[], b"").json();
    let received =
        || requests().as_array().unwrap().iter().map(|r| r["body_bytes"].as_u64().unwrap()).collect::<Vec<_>>();

    // the model last, as the Python SDK orders its fields: 400,000 characters of
    // content (100,000 input tokens at the mock's four characters per token)
    let text = "All work and no play. ".repeat(18_182)[..400_000].to_string();
    let body = |model: &str| {
        format!(
            r#"{{"max_tokens":8,"messages":[{{"role":"user","content":"{text}"}}],"model":"{model}","stream":false}}"#
        )
    };
    let ok = body("claude-sonnet-4-6");
    let r = post_messages(&base, &sonnet_only, &ok);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["input_tokens"], 100_000);
    assert_eq!(received(), vec![ok.len() as u64]);

    // sent in chunks with no length declared: the same
    let chunked = |key: &str, body: &str| {
        let (host, _) = split_url(&base);
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        write!(s, "POST /v1/messages HTTP/1.1\r\nhost: {host}\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").unwrap();
        for piece in body.as_bytes().chunks(50_000) {
            write!(s, "{:x}\r\n", piece.len()).unwrap();
            s.write_all(piece).unwrap();
            s.write_all(b"\r\n").unwrap();
        }
        s.write_all(b"0\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        parse_response(&raw)
    };
    let r = chunked(&sonnet_only, &ok);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(received(), vec![ok.len() as u64, ok.len() as u64]);

    // refused on the way: a model outside the key's list (named last, so most of
    // the body has gone upstream by then), invalid JSON found only at the end, a
    // duplicate model; the upstream receives none of them whole
    let refusals = [
        (body("claude-opus-4-1"), &sonnet_only, 403, "model \"claude-opus-4-1\" is not allowed for this key"),
        (format!("{}}}", body("claude-sonnet-4-6")), &key, 400, "request body is not valid JSON"),
        (
            ok.replace(r#""stream":false"#, r#""mod\u0065l":"claude-opus-4-1""#),
            &sonnet_only,
            400,
            "request body must be a JSON object",
        ),
    ];
    for (b, k, status, message) in &refusals {
        for r in [post_messages(&base, k, b), chunked(k, b)] {
            assert_eq!(r.status, *status, "{}", r.text());
            assert_eq!(r.json()["error"]["message"], *message);
        }
    }
    // (the mock logs a request whose body it could not read in full as 0 bytes)
    let got = received();
    assert!(
        got.len() >= 2 && got[2..].iter().all(|&n| n == 0),
        "a refused body reached the upstream whole: {}",
        requests()
    );

    // the records: model and tokens of the forwarded ones, the refusals' statuses
    gw.stop();
    let db = rusqlite_rows(&gw.db_path());
    let mut statuses: Vec<i64> = db.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 400, 400, 400, 400, 403, 403], "{db:?}");
    for r in db.iter().filter(|r| r.status == 200) {
        assert_eq!((r.model.as_deref(), r.input), (Some("claude-sonnet-4-6"), 100_000), "{r:?}");
    }
}

/// A body read whole must arrive within `server.body_timeout`: a client that
/// stops sending gets 408, and the share of the body budget it held goes back.
#[test]
fn a_body_that_does_not_arrive_in_time_is_refused_and_frees_its_share() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.set_config("server", "body_timeout", "\"1s\"");
    gw.start();
    gw.provision("slow", "dev", &upstream_key);
    // a key that screens requests: its bodies are read whole
    let (_, key) = gw.create_key_with("slow", "dev", &["--shield", "flag"]);
    let base = gw.data_url.clone();

    // 16 MiB declared (the whole budget), a few bytes sent, then nothing
    let started = std::time::Instant::now();
    let mut s = connect_and_send(
        "POST",
        &format!("{base}/v1/messages"),
        &[
            ("x-api-key", &key),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
            ("content-length", "16777216"),
        ],
        b"{\"model\":",
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let r = parse_response(&raw);
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (408, Some("invalid_request_error")), "{}", r.text());
    assert_eq!(r.json()["error"]["message"], "the request body did not arrive in time");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));

    // the budget is free again: a large body is read, screened and forwarded
    let text = "Plain words for a long user turn. ".repeat(4_000);
    let body =
        format!(r#"{{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{{"role":"user","content":"{text}"}}]}}"#);
    let r = post_messages(&base, &key, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    gw.stop();
}
