//! Black-box tests of live usage monitoring: alerts raised from real traffic,
//! stored, deduplicated, listed and acknowledged with the CLI; delivered to
//! real local HTTP receivers (webhook with its HMAC signature, Slack,
//! PagerDuty) with retries and across a restart; `action = "suspend"`;
//! out-of-band use found through the Admin API usage report; `/metrics`
//! checked by `promtool` and against the Grafana dashboard.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use hmac::{Hmac, Mac};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const HOOK_SECRET: &str = "whsec-test-0123456789abcdef";

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A tiny HTTP/1.1 server on a free port: records every request and answers
/// 500 while `fail` is above zero (counting it down), 200 after.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    fail: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
}

impl Receiver {
    fn start(fail: usize) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicUsize::new(fail));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (g, f, a) = (got.clone(), fail.clone(), attempts.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
                let len: usize =
                    headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                a.fetch_add(1, Ordering::SeqCst);
                let failing = f.load(Ordering::SeqCst) > 0;
                if failing {
                    f.fetch_sub(1, Ordering::SeqCst);
                } else {
                    g.lock().unwrap().push(Received { path, headers, body });
                }
                let status = if failing { "500 Internal Server Error" } else { "200 OK" };
                let _ = s.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").as_bytes(),
                );
            }
        });
        Receiver { url, got, fail, attempts }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn wait(&self, n: usize, secs: u64) -> Vec<Received> {
        wait_for(secs, || {
            let g = self.received();
            (g.len() >= n).then_some(g)
        })
    }
}

fn sinks_config(hook: &Receiver, slack: &Receiver, pd: &Receiver) -> String {
    format!(
        r#"
[alerts]
backoff = "200ms"
max_backoff = "1s"

[[alerts.sinks]]
name = "ops-hook"
kind = "webhook"
url = "{}/hook"
secret = "env:KW_TEST_HOOK_SECRET"

[[alerts.sinks]]
kind = "slack"
url = "{}/services/T000/B000/XXXX"

[[alerts.sinks]]
kind = "pagerduty"
url = "{}/v2/enqueue"
routing_key = "pd-routing-key-test"
"#,
        hook.url, slack.url, pd.url
    )
}

fn open_alerts(gw: &mut Gateway) -> Vec<serde_json::Value> {
    let o = gw.kw(&["alerts", "--open", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    json_out(&o).as_array().unwrap().clone()
}

fn wait_alert(gw: &mut Gateway, rule: &str, secs: u64) -> serde_json::Value {
    wait_for(secs, || open_alerts(gw).into_iter().find(|a| a["rule"] == rule))
}

fn scrape(gw: &Gateway) -> String {
    http("GET", &format!("{}/metrics", gw.admin_url), &[("authorization", &format!("Bearer {}", gw.token))], b"").text()
}

#[test]
fn alerts_are_stored_deduplicated_delivered_signed_and_acknowledged() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    // the webhook fails twice: the third attempt (after back-off) succeeds
    let (hook, slack, pd) = (Receiver::start(2), Receiver::start(0), Receiver::start(0));
    gw.append_config(&sinks_config(&hook, &slack, &pd));
    gw.start_with_env(&[("KW_TEST_HOOK_SECRET", HOOK_SECRET)]);
    let (id, key) = gw.provision("billing", "prod", &upstream_key);
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 200);
    assert!(gw.kw(&["key", "revoke", &id]).status.success());
    // the revoked secret is still presented, twice
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 401);
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 401);

    let alert = wait_alert(&mut gw, "revoked_presented", 20);
    assert_eq!(alert["key_id"], id.as_str());
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["status"], "open");
    let alert_id = alert["id"].as_str().unwrap().to_string();

    // webhook: JSON body, signed with HMAC-SHA256 of the raw body
    let got = hook.wait(1, 30);
    assert_eq!(hook.attempts.load(Ordering::SeqCst), 3, "two failures, then delivered");
    let w = &got[0];
    assert_eq!(w.path, "/hook");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(&w.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(w.header("x-keyward-signature"), Some(expected.as_str()));
    let mut wrong = <Hmac<sha2::Sha256> as Mac>::new_from_slice(b"another secret").unwrap();
    wrong.update(&w.body);
    assert_ne!(
        Some(format!("sha256={}", hex::encode(wrong.finalize().into_bytes())).as_str()),
        w.header("x-keyward-signature")
    );
    let body = w.json();
    assert_eq!(body["event"], "trigger");
    assert_eq!(body["alert"]["id"], alert_id.as_str());
    assert_eq!(body["alert"]["rule"], "revoked_presented");
    assert_eq!(body["alert"]["key_id"], id.as_str());

    // Slack incoming webhook and PagerDuty Events API v2
    let s = &slack.wait(1, 20)[0];
    assert_eq!(s.path, "/services/T000/B000/XXXX");
    let text_ = s.json()["text"].as_str().unwrap().to_string();
    assert!(text_.contains("revoked_presented") && text_.contains(&id), "{text_}");
    let p = pd.wait(1, 20)[0].json();
    assert_eq!(p["event_action"], "trigger");
    assert_eq!(p["routing_key"], "pd-routing-key-test");
    assert_eq!(p["dedup_key"], alert["dedup_key"]);
    assert_eq!(p["payload"]["severity"], "critical");
    assert_eq!(p["payload"]["source"], "keyward");

    // presented again while open: still one alert, no second notification
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 401);
    let g = gw.kw(&["alerts", "--json"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let all = json_out(&gw.kw(&["alerts", "--json"]));
    assert_eq!(all.as_array().unwrap().len(), 1, "deduplicated per key and rule: {all} {}", text(&g));
    assert_eq!(hook.received().len() + slack.received().len() + pd.received().len(), 3);

    // the API shows the deliveries; ack is recorded
    let one = http(
        "GET",
        &format!("{}/admin/v1/alerts/{alert_id}", gw.admin_url),
        &[("authorization", &format!("Bearer {}", gw.token))],
        b"",
    )
    .json();
    let deliveries = one["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3);
    let hook_d = deliveries.iter().find(|d| d["sink"] == "ops-hook").unwrap();
    assert_eq!((hook_d["status"].as_str(), hook_d["attempts"].as_i64()), (Some("delivered"), Some(3)));
    let o = gw.kw(&["alerts", "ack", &alert_id, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(json_out(&o)["acked_at"].is_string());
    let human = gw.kw(&["alerts", "--open"]);
    assert!(text(&human).contains(&alert_id) && text(&human).contains("open (acked)"), "{}", text(&human));
    assert_eq!(gw.kw(&["alerts", "ack", "alr_nope"]).status.code(), Some(1));

    let m = scrape(&gw);
    assert!(m.contains("keyward_alerts_raised_total{rule=\"revoked_presented\"} 1"), "{m}");
    assert!(m.contains("keyward_alerts_raised_by_severity_total{severity=\"critical\"} 1"), "{m}");
    assert!(m.contains("keyward_alert_deliveries_total{sink=\"webhook\"} 1"), "{m}");
    assert!(m.contains("keyward_alert_delivery_failures_total{sink=\"webhook\"} 2"), "{m}");
    assert!(m.contains("keyward_refused_total{reason=\"auth\"} 3"), "{m}");

    let log = gw.stop();
    // no secret in a log, a notification or an alert
    let mut everywhere = log.clone();
    for r in [&hook, &slack, &pd] {
        for x in r.received() {
            everywhere.push_str(&String::from_utf8_lossy(&x.body));
            everywhere.push_str(&format!("{:?}", x.headers));
        }
    }
    everywhere.push_str(&all.to_string());
    for secret in [key.as_str(), upstream_key.as_str(), gw.token.as_str()] {
        assert!(!everywhere.contains(secret));
    }
    assert!(!log.contains(HOOK_SECRET) && !log.contains("pd-routing-key-test") && !log.contains("B000/XXXX"));
}

#[test]
fn a_pending_delivery_is_sent_after_a_restart() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    let hook = Receiver::start(usize::MAX);
    gw.append_config(&format!(
        "\n[alerts]\nbackoff = \"300ms\"\nmax_backoff = \"500ms\"\n\n[[alerts.sinks]]\nkind = \"webhook\"\nurl = \"{}/h\"\nsecret = \"{HOOK_SECRET}\"\n",
        hook.url
    ));
    gw.start();
    let (id, key) = gw.provision("app", "dev", &upstream_key);
    assert!(gw.kw(&["key", "suspend", &id]).status.success());
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 401);
    let alert = wait_alert(&mut gw, "revoked_presented", 20);
    wait_for(20, || (hook.attempts.load(Ordering::SeqCst) >= 2).then_some(()));
    let log = gw.stop();
    assert!(hook.received().is_empty(), "nothing delivered before the restart");
    assert!(log.contains("will retry"), "failures are logged");

    hook.fail.store(0, Ordering::SeqCst);
    gw.start();
    let got = hook.wait(1, 20);
    let body = got[0].json();
    assert_eq!(body["alert"]["id"], alert["id"]);
    assert_eq!(body["event"], "trigger");
    // the receiver has the request before the worker reads its answer and counts it
    let counted = "keyward_alert_deliveries_total{sink=\"webhook\"} 1";
    wait_for(20, || scrape(&gw).contains(counted).then_some(()));
    gw.stop();
}

#[test]
fn a_suspend_action_suspends_the_key() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.append_config("\n[monitor.rules.revoked]\naction = \"suspend\"\n");
    gw.start();
    let (id, old) = gw.provision("app", "prod", &upstream_key);
    let o = gw.kw(&["key", "rotate", &id, "--grace", "0s", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let new = json_out(&o)["secret"].as_str().unwrap().to_string();
    assert_eq!(post_messages(&gw.data_url, &new, MSG).status, 200);
    // the rotated-out secret is still in use somewhere: the key is suspended
    assert_eq!(post_messages(&gw.data_url, &old, MSG).status, 401);
    let alert = wait_alert(&mut gw, "revoked_presented", 20);
    assert_eq!(alert["action"], "suspend");
    let k = wait_for(20, || {
        let k = json_out(&gw.kw(&["key", "show", &id, "--json"]));
        (k["status"] == "suspended").then_some(k)
    });
    assert!(k["status_reason"].as_str().unwrap().contains("monitor"), "{k}");
    assert_eq!(post_messages(&gw.data_url, &new, MSG).status, 401, "the current secret stops working too");
    assert!(scrape(&gw).contains("keyward_monitor_suspensions_total 1"));
    let log = gw.stop();
    assert!(log.contains("system:monitor"));
}

#[test]
fn out_of_band_use_of_an_upstream_key_raises_a_critical_alert() {
    let upstream_key = fake_upstream_key();
    let admin_key = format!("sk-ant-admtest-{}", std::process::id());
    let mock = mock_with(&["--accept-key", &upstream_key, "--admin-key", &admin_key]);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.set_config("upstream", "admin_key_ref", "\"env:KW_TEST_ANTHROPIC_ADMIN_KEY\"");
    gw.append_config("\n[monitor.rules.out_of_band]\npoll_interval = \"1s\"\nreport_delay = \"1s\"\n");
    gw.start_with_env(&[("KW_TEST_ANTHROPIC_ADMIN_KEY", &admin_key)]);
    let kid = keyward_testkit::mock::api_key_id(&upstream_key);
    assert!(gw.kw(&["service", "add", "app", "--owner", "t"]).status.success());
    let o = gw
        .kw_stdin(&["upstream", "add", "prod-main", "--env", "prod", "--anthropic-key-id", &kid], Some(&upstream_key));
    assert!(o.status.success(), "{}", text(&o));
    let (_, key) = gw.create_key("app", "prod");
    // traffic through the gateway is explained by its own metering ...
    for _ in 0..3 {
        assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 200);
    }
    // ... tokens spent with the upstream key directly are not
    let r = http(
        "POST",
        &format!("{}/_mock/usage", mock.url),
        &[("content-type", "application/json")],
        format!(r#"{{"api_key_id":"{kid}","input_tokens":4000,"output_tokens":1000}}"#).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let alert = wait_alert(&mut gw, "out_of_band", 150);
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["upstream"], "prod-main");
    assert!(alert["key_id"].is_null());
    assert_eq!(alert["value"].as_f64(), Some(5000.0), "exactly the injected tokens are unexplained: {alert}");
    let all = json_out(&gw.kw(&["alerts", "--json"]));
    assert_eq!(all.as_array().unwrap().len(), 1, "no other alert from the gateway's own traffic: {all}");
    assert!(scrape(&gw).contains("keyward_usage_report_polls_total{outcome=\"ok\"}"));
    let log = gw.stop();
    assert!(!log.contains(&admin_key) && !log.contains(&upstream_key));
}

/// Sample names of an exposition (histogram series keep their suffixes).
fn exposed_names(metrics: &str) -> HashSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[test]
fn metrics_are_valid_for_promtool_and_cover_the_dashboard() {
    let upstream_key = fake_upstream_key();
    let mock = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&mock.url);
    gw.start();
    let (_, key) = gw.provision("billing", "prod", &upstream_key);
    let (_, limited) = gw.create_key_with(
        "billing",
        "prod",
        &["--budget-usd", "5", "--models", "claude-haiku-*", "--expires-in", "30d"],
    );
    assert_eq!(post_messages(&gw.data_url, &key, MSG).status, 200);
    assert_eq!(post_messages(&gw.data_url, &limited, MSG).status, 403, "model not allowed: a policy refusal");
    assert_eq!(post_messages(&gw.data_url, "kw_prod_nope", MSG).status, 401);
    let m = wait_for(20, || {
        let m = scrape(&gw);
        m.contains("status_class=\"2xx\"} 1").then_some(m)
    });
    for needle in [
        "keyward_requests_total{key_id=\"",
        "service=\"billing\",model=\"claude-sonnet-4-6\",status_class=\"4xx\"} 1",
        "direction=\"output\"}",
        "keyward_cost_usd_total{",
        "keyward_upstream_latency_seconds_bucket{le=\"+Inf\"} 1",
        "keyward_gateway_overhead_seconds_count 1",
        "keyward_refused_total{reason=\"policy\"} 1",
        "keyward_refused_total{reason=\"auth\"} 1",
        "keyward_refused_total{reason=\"shield\"} 0",
        "keyward_key_expiry_timestamp_seconds{",
        "keyward_key_last_rotation_timestamp_seconds{",
        "keyward_budget_remaining_usd{",
        "keyward_secret_fetches_total{outcome=\"ok\"}",
        "keyward_upstream_secret_age_seconds{upstream=\"prod-main\"}",
    ] {
        assert!(m.contains(needle), "{needle} missing:\n{m}");
    }
    assert!(!m.contains(&key) && !m.contains(&limited) && !m.contains(&upstream_key));

    // promtool, on the real scrape
    match std::process::Command::new("promtool").arg("--version").output() {
        Ok(_) => {
            let mut child = std::process::Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "promtool check metrics failed: {}\n{m}", text(&out));
        }
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED promtool check: promtool is not installed (CI is unset; .ci/run installs it)");
        }
        Err(e) => panic!("promtool is required in CI: {e}"),
    }

    // every metric the dashboard queries is exposed
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/keyward.json");
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(e) = o.get("expr").and_then(|e| e.as_str()) {
                    out.push(e.to_string());
                }
                o.values().for_each(|x| collect(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    collect(&dash, &mut exprs);
    assert!(exprs.len() >= 4, "the four views");
    let names = exposed_names(&m);
    for e in &exprs {
        let used: Vec<&str> =
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("keyward_")).collect();
        assert!(!used.is_empty(), "{e}");
        for u in used {
            assert!(names.contains(u), "the dashboard queries {u}, which /metrics does not expose");
        }
    }
    let titles: Vec<&str> = dash["panels"].as_array().unwrap().iter().filter_map(|p| p["title"].as_str()).collect();
    for t in
        ["Requests per minute by key", "Tokens by key and direction", "Error rate by key", "Cost by key and service"]
    {
        assert!(titles.contains(&t), "{t} missing from {titles:?}");
    }
    gw.stop();
}
