//! Black-box tests of the key lifecycle: rotation with a grace window,
//! idempotency, scheduled rotation and delivery, expiry, suspension,
//! decommission, limits, budgets, environments, upstream rotation and
//! retirement, and the inventory review.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::Duration;

const CHEAP: &str =
    r#"{"model":"claude-sonnet-4-6","max_tokens":32,"messages":[{"role":"user","content":"Hello there, gateway!"}]}"#;

fn setup() -> (Mock, Gateway, String) {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (gw, _) = Gateway::init(&mock.url);
    (mock, gw, upstream_key)
}

#[test]
fn rotation_keeps_identity_and_honours_the_grace_window() {
    let (_mock, mut gw, upstream_key) = setup();
    gw.start();
    let (id, v1) = gw.provision("billing", "prod", &upstream_key);
    assert_eq!(post_messages(&gw.data_url, &v1, CHEAP).status, 200);

    let o = gw.kw(&["key", "rotate", &id, "--grace", "3s", "--idempotency-key", "r1", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = json_out(&o);
    let v2 = r["secret"].as_str().unwrap().to_string();
    assert_eq!(r["id"], id.as_str(), "the key id is stable across rotation");
    assert!(r["old_secret_valid_until"].is_string());
    assert_ne!(v1, v2);
    // both work during the grace window
    assert_eq!(post_messages(&gw.data_url, &v1, CHEAP).status, 200);
    assert_eq!(post_messages(&gw.data_url, &v2, CHEAP).status, 200);

    // the same rotation again returns the same secret instead of minting another
    let again = json_out(&gw.kw(&["key", "rotate", &id, "--grace", "3s", "--idempotency-key", "r1", "--json"]));
    assert_eq!(again["secret"].as_str(), Some(v2.as_str()));

    // rotating again inside the window: at most two secrets are valid
    let r3 = json_out(&gw.kw(&["key", "rotate", &id, "--grace", "1s", "--json"]));
    let v3 = r3["secret"].as_str().unwrap().to_string();
    assert_eq!(post_messages(&gw.data_url, &v1, CHEAP).status, 401, "the oldest secret left at once");
    assert_eq!(post_messages(&gw.data_url, &v2, CHEAP).status, 200);
    assert_eq!(post_messages(&gw.data_url, &v3, CHEAP).status, 200);

    // after the window, only the newest works
    wait_for(10, || (post_messages(&gw.data_url, &v2, CHEAP).status == 401).then_some(()));
    assert_eq!(post_messages(&gw.data_url, &v3, CHEAP).status, 200);

    // --grace 0 revokes the old secret at once
    let v4 =
        json_out(&gw.kw(&["key", "rotate", &id, "--grace", "0", "--json"]))["secret"].as_str().unwrap().to_string();
    assert_eq!(post_messages(&gw.data_url, &v3, CHEAP).status, 401);
    assert_eq!(post_messages(&gw.data_url, &v4, CHEAP).status, 200);

    // presentations of rotated-out secrets are counted and reported
    let show = json_out(&gw.kw(&["key", "show", &id, "--json"]));
    assert!(show["stale_secret_presented"].as_i64().unwrap() >= 3, "{show}");
    assert!(show["last_rotated_at"].is_string());
    let review = gw.kw(&["review", "--json"]);
    assert_eq!(review.status.code(), Some(1), "findings exit 1");
    let items = json_out(&review);
    let item = items.as_array().unwrap().iter().find(|i| i["key_id"] == id.as_str()).unwrap();
    assert!(item["findings"].as_array().unwrap().iter().any(|f| f == "stale_secret_presented"), "{item}");

    // usage history carries over: one key id for all secrets
    let usage = json_out(&gw.kw(&["usage", "--json"]));
    let row = usage.as_array().unwrap().iter().find(|r| r["key_id"] == id.as_str()).unwrap();
    assert!(row["requests"].as_u64().unwrap() >= 8, "{row}");
    assert_eq!(usage.as_array().unwrap().len(), 1, "every secret's requests are under the one key id");
    // and the counts survive a restart
    gw.stop();
    gw.start();
    let show = json_out(&gw.kw(&["key", "show", &id, "--json"]));
    assert!(show["stale_secret_presented"].as_i64().unwrap() >= 3);
    assert_eq!(post_messages(&gw.data_url, &v3, CHEAP).status, 401, "retired secrets stay retired after restart");
    assert_eq!(post_messages(&gw.data_url, &v4, CHEAP).status, 200);
    gw.stop();
}

#[test]
fn scheduled_rotation_delivers_the_new_secret() {
    let (_mock, mut gw, upstream_key) = setup();
    gw.set_config("keys", "rotation_check_interval", "\"1s\"");
    gw.start();
    gw.provision("svc", "dev", &upstream_key);
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("svc.key");
    let deliver = format!("file:{}", target.display());
    let (id, v1) = gw.create_key_with("svc", "dev", &["--rotate-every", "2s", "--deliver-to", &deliver]);
    // another key is due too but has nowhere to deliver: it is reported, not rotated
    let (quiet_id, quiet) = gw.create_key_with("svc", "dev", &["--rotate-every", "1s"]);

    let v2 = wait_for(20, || std::fs::read_to_string(&target).ok().map(|s| s.trim().to_string()));
    assert_ne!(v2, v1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(post_messages(&gw.data_url, &v2, CHEAP).status, 200, "the delivered secret works");
    assert_eq!(post_messages(&gw.data_url, &v1, CHEAP).status, 200, "the old one works during the default grace");
    let show = json_out(&gw.kw(&["key", "show", &id, "--json"]));
    assert!(show["last_rotated_at"].is_string());

    assert_eq!(post_messages(&gw.data_url, &quiet, CHEAP).status, 200, "never rotated silently");
    let items = json_out(&gw.kw(&["review", "--json"]));
    let item = items.as_array().unwrap().iter().find(|i| i["key_id"] == quiet_id.as_str()).unwrap();
    let f: Vec<&str> = item["findings"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(f.contains(&"not_rotated") && f.contains(&"rotation_due_without_delivery"), "{f:?}");
    let listed = json_out(&gw.kw(&["key", "list", "--finding", "not_rotated", "--json"]));
    assert!(listed.as_array().unwrap().iter().any(|k| k["id"] == quiet_id.as_str()));
    let log = gw.stop();
    assert!(log.contains("due for rotation and has no delivery target"), "warned in the logs");
}

#[test]
fn expiry_suspension_and_decommission() {
    let (_mock, mut gw, upstream_key) = setup();
    gw.start();
    gw.provision("contractors", "stg", &upstream_key);
    let (_, short) = gw.create_key_with("contractors", "stg", &["--expires-in", "2s"]);
    assert_eq!(post_messages(&gw.data_url, &short, CHEAP).status, 200);
    wait_for(10, || (post_messages(&gw.data_url, &short, CHEAP).status == 401).then_some(()));

    let (id, key) = gw.create_key("contractors", "stg");
    assert!(gw.kw(&["key", "suspend", &id, "--reason", "investigating"]).status.success());
    assert_eq!(post_messages(&gw.data_url, &key, CHEAP).status, 401, "suspension is effective at once");
    assert!(gw.kw(&["key", "resume", &id]).status.success());
    assert_eq!(post_messages(&gw.data_url, &key, CHEAP).status, 200, "and reversible");
    assert_eq!(gw.kw(&["key", "resume", &id]).status.code(), Some(1), "resuming an active key is refused");

    let (_, key2) = gw.create_key("contractors", "stg");
    let o = gw.kw(&["service", "decommission", "contractors", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = json_out(&o);
    assert_eq!(v["service"]["status"], "retired");
    // the provisioned key, the expired one (expired is not revoked), the resumed one and key2
    assert_eq!(v["revoked_keys"], 4);
    for k in [&key, &key2] {
        assert_eq!(post_messages(&gw.data_url, k, CHEAP).status, 401);
    }
    let o = gw.kw(&["key", "create", "--service", "contractors", "--env", "stg"]);
    assert_eq!(o.status.code(), Some(1), "no new keys for a retired service");
    assert_eq!(gw.kw(&["key", "resume", &id]).status.code(), Some(1), "revocation is permanent");
    gw.stop();
}

#[test]
fn limits_budget_models_and_networks() {
    let (_mock, mut gw, upstream_key) = setup();
    gw.start();
    gw.provision("api", "dev", &upstream_key);
    let base = gw.data_url.clone();

    // requests per minute
    let (_, k) = gw.create_key_with("api", "dev", &["--rpm", "2"]);
    assert_eq!(post_messages(&base, &k, CHEAP).status, 200);
    assert_eq!(post_messages(&base, &k, CHEAP).status, 200);
    let r = post_messages(&base, &k, CHEAP);
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (429, Some("rate_limit_error")));
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);

    // tokens per minute: each request is 6 input + 10 output tokens
    let (_, k) = gw.create_key_with("api", "dev", &["--tpm", "20"]);
    assert_eq!(post_messages(&base, &k, CHEAP).status, 200);
    assert_eq!(post_messages(&base, &k, CHEAP).status, 200, "4 tokens left: may start");
    let r = post_messages(&base, &k, CHEAP);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());

    // concurrency: a slow stream holds the only slot
    let (_, k) = gw.create_key_with("api", "dev", &["--max-concurrent", "1"]);
    let slow =
        r#"{"model":"mock-slow-stream","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let s = connect_and_send(
        "POST",
        &format!("{base}/v1/messages"),
        &[("x-api-key", &k), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")],
        slow.as_bytes(),
    );
    let mut s = s;
    let mut first = [0u8; 64];
    use std::io::Read;
    assert!(s.read(&mut first).unwrap() > 0, "the stream has started");
    assert_eq!(post_messages(&base, &k, CHEAP).status, 429);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    drop(s);
    wait_for(5, || (post_messages(&base, &k, CHEAP).status == 200).then_some(()));

    // budget: checked at the start; the request that crosses the line completes
    // (each request costs (6*3 + 10*15)/1e6 = $0.000168 at Sonnet 4 prices)
    let (_, k) = gw.create_key_with("api", "dev", &["--budget-usd", "0.0002"]);
    assert_eq!(post_messages(&base, &k, CHEAP).status, 200);
    assert_eq!(post_messages(&base, &k, CHEAP).status, 200, "$0.000168 spent < $0.0002: may start");
    let r = post_messages(&base, &k, CHEAP);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.json()["error"]["details"]["error_code"], "budget_exceeded");
    assert!(r.header("retry-after").is_none(), "SDKs must not retry an exhausted budget");

    // models
    let (id, k) = gw.create_key_with("api", "dev", &["--models", "claude-haiku-*"]);
    let r = post_messages(&base, &k, CHEAP);
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (403, Some("permission_error")));
    assert_eq!(post_messages(&base, &k, &CHEAP.replace("claude-sonnet-4-6", "claude-haiku-4-5")).status, 200);
    let batch = r#"{"requests":[{"custom_id":"a","params":{"model":"claude-opus-4-7","max_tokens":5,"messages":[{"role":"user","content":"x"}]}}]}"#;
    let r = http(
        "POST",
        &format!("{base}/v1/messages/batches"),
        &[("x-api-key", &k), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")],
        batch.as_bytes(),
    );
    assert_eq!(r.status, 403, "batch requests are checked too");
    assert!(gw.kw(&["key", "update", &id, "--models", "none"]).status.success());
    assert_eq!(post_messages(&base, &k, CHEAP).status, 200, "update takes effect at once");

    // networks
    let (id, k) = gw.create_key_with("api", "dev", &["--allow-cidr", "10.0.0.0/8"]);
    let r = post_messages(&base, &k, CHEAP);
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (403, Some("permission_error")));
    assert!(gw.kw(&["key", "update", &id, "--allow-cidr", "10.0.0.0/8,127.0.0.0/8"]).status.success());
    assert_eq!(post_messages(&base, &k, CHEAP).status, 200);
    let o = gw.kw(&["key", "update", &id, "--allow-cidr", "nonsense"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = gw.kw(&["key", "create", "--service", "api", "--env", "dev", "--rpm", "0"]);
    assert_eq!(o.status.code(), Some(1));
    gw.stop();
}

#[test]
fn environment_defaults_apply_and_keys_stay_in_their_environment() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.set_config("environments.prod", "rpm", "1");
    gw.set_config("environments.prod", "log_request_metadata", "true");
    gw.set_config("server", "worker_threads", "1");
    gw.start();
    let (prod_id, prod) = gw.provision("web", "prod", &upstream_key);
    let (_, roomy) = gw.create_key_with("web", "prod", &["--rpm", "100"]);
    assert_eq!(post_messages(&gw.data_url, &prod, CHEAP).status, 200);
    assert_eq!(post_messages(&gw.data_url, &prod, CHEAP).status, 429, "prod default: 1 rpm");
    for _ in 0..3 {
        assert_eq!(post_messages(&gw.data_url, &roomy, CHEAP).status, 200, "a key's own setting wins");
    }
    let show = json_out(&gw.kw(&["key", "show", &prod_id, "--json"]));
    assert_eq!(show["effective_policy"]["rpm"], 1);
    // a dev key has no dev upstream here: it cannot reach the prod upstream
    let (_, dev) = gw.create_key("web", "dev");
    assert_eq!(post_messages(&gw.data_url, &dev, CHEAP).status, 502);
    let log = gw.stop();
    assert!(log.contains(&prod_id) && log.contains("output_tokens"), "prod logs request metadata");
}

#[test]
fn upstream_rotation_deactivates_the_old_key_at_anthropic() {
    let (old_key, new_key) = (fake_upstream_key(), format!("{}-new", fake_upstream_key()));
    let admin_key = format!("sk-ant-admtest-{}", std::process::id());
    let mock = mock_with(&["--accept-key", &old_key, "--accept-key", &new_key, "--admin-key", &admin_key]);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.set_config("upstream", "admin_key_ref", "\"env:KW_TEST_ANTHROPIC_ADMIN_KEY\"");
    gw.set_config("keys", "rotation_check_interval", "\"1s\"");
    gw.start_with_env(&[("KW_TEST_ANTHROPIC_ADMIN_KEY", &admin_key)]);
    let old_id = keyward_testkit::mock::api_key_id(&old_key);
    let new_id = keyward_testkit::mock::api_key_id(&new_key);
    assert!(gw.kw(&["service", "add", "app", "--owner", "t"]).status.success());
    let o = gw.kw_stdin(&["upstream", "add", "main", "--env", "prod", "--anthropic-key-id", &old_id], Some(&old_key));
    assert!(o.status.success(), "{}", text(&o));
    let (_, key) = gw.create_key("app", "prod");
    assert_eq!(post_messages(&gw.data_url, &key, CHEAP).status, 200);

    let o = gw.kw_stdin(
        &["upstream", "rotate", "main", "--grace", "2s", "--anthropic-key-id", &new_id, "--json"],
        Some(&new_key),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(post_messages(&gw.data_url, &key, CHEAP).status, 200, "new requests use the new key");
    let status = |id: &str| {
        http(
            "GET",
            &format!("{}/v1/organizations/api_keys/{id}", mock.url),
            &[("x-api-key", &admin_key), ("anthropic-version", "2023-06-01")],
            b"",
        )
        .json()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status(&old_id), "active", "not before the grace window ends");
    wait_for(15, || (status(&old_id) == "inactive").then_some(()));
    assert_eq!(status(&new_id), "active");
    assert_eq!(post_messages(&gw.data_url, &key, CHEAP).status, 200);

    // retire refuses while keys route to it
    let o = gw.kw(&["upstream", "retire", "main"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("still route"));
    assert!(gw.kw(&["upstream", "retire", "main", "--force"]).status.success());
    assert_eq!(post_messages(&gw.data_url, &key, CHEAP).status, 502);
    let ups = json_out(&gw.kw(&["upstream", "list", "--json"]));
    assert_eq!(ups[0]["status"], "retired");
    let out = gw.stop();
    for secret in [&old_key, &new_key, &admin_key] {
        assert!(!out.contains(secret.as_str()), "an upstream or admin key leaked into the log");
    }
    let _ = Duration::ZERO;
}

#[test]
fn every_data_plane_thread_serves_and_meters() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.set_config("server", "data_threads", "3");
    gw.start();
    let (key_id, key) = gw.provision("web", "dev", &upstream_key);
    // 12 clients at once, each on its own connection: the kernel spreads them over the threads
    let base = gw.data_url.clone();
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (base, key) = (base.clone(), key.clone());
            std::thread::spawn(move || (0..5).map(|_| post_messages(&base, &key, CHEAP).status).collect::<Vec<_>>())
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert_eq!(statuses.len(), 60);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let log = gw.stop();
    // (the text log may colour field names: drop escape sequences first)
    let mut plain = String::new();
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    assert!(plain.contains("data_threads=3"), "{plain}");
    // every request was metered (the writer drains its queue at shutdown)
    gw.start();
    let usage = json_out(&gw.kw(&["usage", "--json"]));
    let row = usage.as_array().unwrap().iter().find(|r| r["key_id"] == key_id.as_str()).unwrap();
    assert_eq!(row["requests"], 60, "{usage}");
    gw.stop();
}
