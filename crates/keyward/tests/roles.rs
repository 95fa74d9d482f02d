//! Least privilege on the admin plane: every endpoint x every role, service
//! scoping, token lifecycle, failed-authentication back-off with its
//! aggregate audit entry, and the admin listener's TLS rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};

const ROLES: [&str; 4] = ["service-owner", "auditor", "operator", "owner"];

fn call(gw: &Gateway, token: &str, method: &str, path: &str, body: Option<&Value>) -> Resp {
    let auth = format!("Bearer {token}");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    http(method, &format!("{}{path}", gw.admin_url), &headers, payload.as_bytes())
}

fn token(gw: &mut Gateway, role: &str, services: Option<&str>) -> (String, String) {
    let mut args = vec!["token", "create", "--role", role, "--json"];
    if let Some(s) = services {
        args.extend(["--services", s]);
    }
    let o = gw.kw(&args);
    assert!(o.status.success(), "{}", text(&o));
    let v = json_out(&o);
    (v["id"].as_str().unwrap().to_string(), v["secret"].as_str().unwrap().to_string())
}

#[test]
fn every_endpoint_is_checked_against_every_role() {
    let upstream_key = fake_upstream_key();
    let m = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&m.url);
    gw.start();
    let (key_a, _) = gw.provision("alpha", "prod", &upstream_key);
    assert!(gw.kw(&["service", "add", "beta", "--owner", "team-b"]).status.success());
    for s in ["gamma-operator", "gamma-owner"] {
        assert!(gw.kw(&["service", "add", s, "--owner", "team-g"]).status.success());
    }
    let (key_b, _) = gw.create_key("beta", "prod");
    let (key_c, _) = gw.create_key("alpha", "prod");
    for name in ["spare-operator", "spare-owner"] {
        let o = gw.kw(&["upstream", "add", name, "--env", "dev", "--ref", "env:KW_SPARE"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let mut tokens = std::collections::HashMap::new();
    tokens.insert("owner", gw.token.clone());
    for role in ["operator", "auditor"] {
        tokens.insert(role, token(&mut gw, role, None).1);
    }
    tokens.insert("service-owner", token(&mut gw, "service-owner", Some("alpha")).1);

    // (method, path, body, roles allowed); {role} in a path or body names a per-role object
    let table: Vec<(&str, String, Option<Value>, &[&str])> = vec![
        ("GET", "/admin/v1/services".into(), None, &["owner", "operator", "auditor", "service-owner"]),
        (
            "POST",
            "/admin/v1/services".into(),
            Some(json!({"name": "new-{role}", "owner": "t"})),
            &["owner", "operator"],
        ),
        ("GET", "/admin/v1/services/alpha".into(), None, &["owner", "operator", "auditor", "service-owner"]),
        ("GET", "/admin/v1/services/beta".into(), None, &["owner", "operator", "auditor"]),
        ("POST", "/admin/v1/services/gamma-{role}/decommission".into(), Some(json!({})), &["owner", "operator"]),
        ("GET", "/admin/v1/upstreams".into(), None, &["owner", "operator", "auditor"]),
        (
            "POST",
            "/admin/v1/upstreams".into(),
            Some(json!({"name": "up-{role}", "env": "stg", "ref": "env:KW_NONE"})),
            &["owner", "operator"],
        ),
        (
            "POST",
            "/admin/v1/upstreams/spare-{role}/rotate".into(),
            Some(json!({"ref": "env:KW_SPARE2", "grace": "1h"})),
            &["owner", "operator"],
        ),
        (
            "POST",
            "/admin/v1/upstreams/spare-{role}/compromised".into(),
            Some(json!({"found_in": "x"})),
            &["owner", "operator"],
        ),
        (
            "POST",
            "/admin/v1/upstreams/spare-{role}/retire".into(),
            Some(json!({"force": true})),
            &["owner", "operator"],
        ),
        ("GET", "/admin/v1/keys".into(), None, &["owner", "operator", "auditor", "service-owner"]),
        (
            "POST",
            "/admin/v1/keys".into(),
            Some(json!({"service": "alpha", "env": "dev"})),
            &["owner", "operator", "service-owner"],
        ),
        ("POST", "/admin/v1/keys".into(), Some(json!({"service": "beta", "env": "dev"})), &["owner", "operator"]),
        ("GET", format!("/admin/v1/keys/{key_a}"), None, &["owner", "operator", "auditor", "service-owner"]),
        ("GET", format!("/admin/v1/keys/{key_b}"), None, &["owner", "operator", "auditor"]),
        ("GET", "/admin/v1/keys/key_doesnotexist".into(), None, &["owner", "operator", "auditor"]),
        (
            "PATCH",
            format!("/admin/v1/keys/{key_a}"),
            Some(json!({"rpm": 100})),
            &["owner", "operator", "service-owner"],
        ),
        ("PATCH", format!("/admin/v1/keys/{key_b}"), Some(json!({"rpm": 100})), &["owner", "operator"]),
        (
            "POST",
            format!("/admin/v1/keys/{key_a}/rotate"),
            Some(json!({"grace": "1h"})),
            &["owner", "operator", "service-owner"],
        ),
        ("POST", format!("/admin/v1/keys/{key_b}/rotate"), Some(json!({"grace": "1h"})), &["owner", "operator"]),
        ("POST", format!("/admin/v1/keys/{key_a}/suspend"), Some(json!({})), &["owner", "operator", "service-owner"]),
        ("POST", format!("/admin/v1/keys/{key_a}/resume"), Some(json!({})), &["owner", "operator", "service-owner"]),
        ("POST", format!("/admin/v1/keys/{key_b}/suspend"), Some(json!({})), &["owner", "operator"]),
        ("POST", format!("/admin/v1/keys/{key_b}/resume"), Some(json!({})), &["owner", "operator"]),
        ("POST", format!("/admin/v1/keys/{key_c}/revoke"), Some(json!({})), &["owner", "operator", "service-owner"]),
        ("POST", format!("/admin/v1/keys/{key_b}/revoke"), Some(json!({})), &["owner", "operator"]),
        ("GET", "/admin/v1/tokens".into(), None, &["owner", "auditor"]),
        ("POST", "/admin/v1/tokens".into(), Some(json!({"role": "auditor"})), &["owner"]),
        ("POST", "/admin/v1/tokens/tok_doesnotexist/revoke".into(), None, &["owner"]),
        ("GET", "/admin/v1/audit".into(), None, &["owner", "auditor"]),
        ("GET", "/admin/v1/audit/pubkey".into(), None, &["owner", "auditor"]),
        ("POST", "/admin/v1/audit/checkpoint".into(), None, &["owner", "auditor"]),
        ("GET", "/admin/v1/alerts".into(), None, &["owner", "operator", "auditor", "service-owner"]),
        ("GET", "/admin/v1/alerts/alr_doesnotexist".into(), None, &["owner", "operator", "auditor"]),
        ("POST", "/admin/v1/alerts/alr_doesnotexist/ack".into(), None, &["owner", "operator"]),
        ("GET", "/admin/v1/usage".into(), None, &["owner", "operator", "auditor", "service-owner"]),
        ("GET", "/admin/v1/review".into(), None, &["owner", "operator", "auditor"]),
        ("POST", "/admin/v1/scan/classify".into(), Some(json!({"secrets": []})), &["owner", "operator", "auditor"]),
        ("GET", "/metrics".into(), None, &["owner", "operator", "auditor"]),
    ];
    let mut failures = Vec::new();
    // the narrowest roles first, so that objects still exist when they try
    for role in ROLES {
        let tok = tokens[role].clone();
        for (method, path, body, allowed) in &table {
            let path = path.replace("{role}", role.split('-').next().unwrap());
            let body = body.as_ref().map(|b| serde_json::from_str(&b.to_string().replace("{role}", role)).unwrap());
            let r = call(&gw, &tok, method, &path, body.as_ref());
            let expect_allowed = allowed.contains(&role);
            let ok = if expect_allowed { r.status != 401 && r.status != 403 } else { r.status == 403 };
            if !ok {
                failures.push(format!("{role} {method} {path}: {} {}", r.status, r.text()));
            }
            if r.status == 403 {
                let v = r.json();
                assert_eq!(v["error"]["type"], "permission_error");
                // no detail about objects the caller cannot see
                let msg = v["error"]["message"].as_str().unwrap();
                assert!(!msg.contains("key_") && !msg.contains("beta"), "{msg}");
            }
        }
    }
    assert!(failures.is_empty(), "role table violations:\n{}", failures.join("\n"));

    // a service-owner sees only its services' objects
    let so = tokens["service-owner"].clone();
    let keys = call(&gw, &so, "GET", "/admin/v1/keys", None).json();
    let services: std::collections::BTreeSet<&str> =
        keys["data"].as_array().unwrap().iter().map(|k| k["service"].as_str().unwrap()).collect();
    assert_eq!(services.into_iter().collect::<Vec<_>>(), ["alpha"]);
    let svcs = call(&gw, &so, "GET", "/admin/v1/services", None).json();
    assert_eq!(svcs["data"].as_array().unwrap().len(), 1);
    assert_eq!(svcs["data"][0]["name"], "alpha");
    // unknown and foreign key ids get the same answer
    let foreign = call(&gw, &so, "GET", &format!("/admin/v1/keys/{key_b}"), None);
    let unknown = call(&gw, &so, "GET", "/admin/v1/keys/key_doesnotexist", None);
    assert_eq!((foreign.status, foreign.body), (unknown.status, unknown.body));
}

#[test]
fn tokens_are_listed_without_secrets_revoked_and_expire() {
    let (mut gw, _) = Gateway::init("http://127.0.0.1:9");
    gw.start();
    let (id, secret) = token(&mut gw, "auditor", None);
    assert_eq!(call(&gw, &secret, "GET", "/admin/v1/keys", None).status, 200);
    let o = gw.kw(&["token", "list", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let listed = text(&o);
    assert!(listed.contains(&id) && !listed.contains(&secret) && !listed.contains(&gw.token));
    let o = gw.kw(&["token", "create", "--role", "service-owner"]);
    assert!(!o.status.success(), "a service-owner token needs services");
    let o = gw.kw(&["token", "create", "--role", "root"]);
    assert!(!o.status.success());
    let o = gw.kw(&["token", "revoke", &id]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(call(&gw, &secret, "GET", "/admin/v1/keys", None).status, 401);
    let o = gw.kw(&["token", "create", "--role", "operator", "--expires-in", "1s", "--json"]);
    let short = json_out(&o)["secret"].as_str().unwrap().to_string();
    assert_eq!(call(&gw, &short, "GET", "/admin/v1/keys", None).status, 200);
    wait_for(10, || (call(&gw, &short, "GET", "/admin/v1/keys", None).status == 401).then_some(()));
    // revocation holds across a restart
    gw.stop();
    gw.start();
    assert_eq!(call(&gw, &secret, "GET", "/admin/v1/keys", None).status, 401);
    let o = gw.kw(&["token", "list", "--json"]);
    let v = json_out(&o);
    let row = v.as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).unwrap().clone();
    assert_eq!(row["status"], "revoked");
    assert!(row["last_used_at"].is_string(), "{row}");
}

#[test]
fn failed_authentication_backs_off_per_address_and_is_audited_in_aggregate() {
    let upstream_key = fake_upstream_key();
    let m = mock(&upstream_key);
    let (mut gw, _) = Gateway::init(&m.url);
    gw.set_config("server", "auth_fail_burst", "3");
    gw.set_config("keys", "rotation_check_interval", "\"1s\"");
    gw.start();
    let (_, secret) = gw.provision("billing", "prod", &upstream_key);
    assert_eq!(post_messages(&gw.data_url, &secret, MSG).status, 200);
    let (kid, revoked) = gw.create_key("billing", "prod");
    assert!(gw.kw(&["key", "revoke", &kid]).status.success());
    let wrong = "kw_prod_0000000000000000000000000000000000000000AAAAAA";
    let statuses: Vec<u16> = (0..5).map(|_| post_messages(&gw.data_url, wrong, MSG).status).collect();
    // a burst of 3, the 4th failure starts the back-off, the 5th is refused with 429
    assert_eq!(statuses, [401, 401, 401, 401, 429]);
    let r = post_messages(&gw.data_url, wrong, MSG);
    assert_eq!(r.status, 429, "the address backs off");
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    // a valid key from the same address is served: a neighbour's bad key locks nobody out
    assert_eq!(post_messages(&gw.data_url, &secret, MSG).status, 200);
    assert_eq!(post_messages(&gw.data_url, &revoked, MSG).status, 429, "a revoked key is still refused");
    // the admin plane counts its own failures (same address, same back-off)
    let admin = call(&gw, "kwa_wrong", "GET", "/admin/v1/keys", None);
    assert_eq!(admin.status, 429);
    // one aggregate entry per plane and address, not one per attempt
    let entry = wait_for(20, || {
        let o = gw.kw(&["audit", "tail", "-n", "200", "--json"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|e| e["action"] == "auth.failed" && e["summary"]["plane"] == "data")
    });
    assert_eq!(entry["source"], "127.0.0.1");
    assert_eq!(entry["summary"]["failures"], 3 + 1);
    assert!(entry["summary"]["throttled"].as_u64().unwrap() >= 2, "{entry}");
    assert!(!entry.to_string().contains(wrong));
    // after the back-off the key works again
    wait_for(20, || (post_messages(&gw.data_url, &secret, MSG).status == 200).then_some(()));
}

#[test]
fn the_admin_plane_beyond_loopback_needs_tls_or_an_explicit_flag() {
    let (gw, _) = Gateway::init("http://127.0.0.1:9");
    gw.set_config("server", "admin_listen", "\"0.0.0.0:0\"");
    let cfg = gw.config.to_str().unwrap().to_string();
    let o = cli(&["serve", "--config", &cfg], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("without TLS"), "{}", text(&o));
    assert!(text(&o).contains("--insecure-admin"), "{}", text(&o));

    let (mut p, _) =
        Proc::spawn(&["serve", "--config", &cfg, "--insecure-admin"], &[], &["admin plane listening on http://"]);
    wait_for(10, || p.output().contains("INSECURE").then_some(()));
    assert!(p.stop().success());

    // with a certificate (from a private CA): https only
    let dir = gw.data_dir();
    let (ca, cert, key) = (dir.join("ca.crt"), dir.join("admin.crt"), dir.join("admin.key"));
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for args in [
        [
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=keyward test CA", "-keyout", &p("ca.key"), "-out", &p("ca.crt")],
        ]
        .concat(),
        [&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", &p("admin.key"), "-out", &p("admin.csr")]].concat(),
        vec![
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &p("admin.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &p("san.ext"),
            "-out",
            &p("admin.crt"),
        ],
    ] {
        let o =
            std::process::Command::new("openssl").args(&args).output().expect("openssl makes the test certificates");
        assert!(o.status.success(), "{}", text(&o));
    }
    gw.set_config("server", "admin_tls_cert", &format!("{:?}", cert.to_str().unwrap()));
    gw.set_config("server", "admin_tls_key", &format!("{:?}", key.to_str().unwrap()));
    let (mut p, lines) = Proc::spawn(&["serve", "--config", &cfg], &[], &["admin plane listening on https://"]);
    let addr = lines[0].split("https://").nth(1).unwrap().trim().to_string();
    let port = addr.rsplit(':').next().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let o = cli(
        &["service", "list", "--json", "--server", &url, "--token", &gw.token, "--cacert", ca.to_str().unwrap()],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    // without the CA the client refuses the certificate; plain http gets no answer
    let o = cli(&["service", "list", "--server", &url, "--token", &gw.token], None);
    assert!(!o.status.success());
    let plain = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/admin/v1/services"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000");
    assert!(p.stop().success());
    assert!(!p.output().contains(&gw.token));
}
