use super::*;
use keyward_secrets::{DefaultSources, VaultAuth, VaultConfig};
use keyward_testkit::fakes::vault::FakeVault;
use serde_json::json;
use std::time::Duration;

fn cfg(addr: String, auth: VaultAuth) -> VaultConfig {
    VaultConfig { addr, namespace: None, auth, timeout: Duration::from_secs(5) }
}

fn token_source(fake: &FakeVault) -> DefaultSources {
    fake.add_token("hvs.test-token");
    DefaultSources::external().with_vault(cfg(fake.addr(), VaultAuth::Token(secret("hvs.test-token"))))
}

#[tokio::test]
async fn kv2_read_with_token_gives_current_version_and_previous() {
    let fake = FakeVault::start().await.unwrap();
    fake.put("secret", "claude/prod", json!({"api_key": "sk-ant-v1", "other": "x"}));
    fake.put("secret", "claude/prod", json!({"api_key": "sk-ant-v2", "other": "x"}));
    let src = token_source(&fake);
    let f = fetch(&src, "vault://secret/claude/prod#api_key").await.unwrap();
    assert_eq!(value(&f), "sk-ant-v2");
    assert_eq!(f.version.as_deref(), Some("2"));
    assert_eq!(previous(&f), Some("sk-ant-v1"));

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/v1/secret/data/claude/prod");
    assert_eq!(reqs[0].query, None);
    assert_eq!(reqs[0].header("x-vault-token"), Some("<present>"));
    assert_eq!(reqs[0].header("x-vault-namespace"), None);
    assert_eq!(reqs[1].query.as_deref(), Some("version=1"));
}

#[tokio::test]
async fn a_deleted_previous_version_is_no_previous() {
    let fake = FakeVault::start().await.unwrap();
    fake.put("secret", "k", json!({"f": "one"}));
    fake.put("secret", "k", json!({"f": "two"}));
    fake.delete_version("secret", "k", 1);
    let f = fetch(&token_source(&fake), "vault://secret/k#f").await.unwrap();
    assert_eq!(value(&f), "two");
    assert_eq!(previous(&f), None);
}

#[tokio::test]
async fn errors_are_classified() {
    let fake = FakeVault::start().await.unwrap();
    fake.put("secret", "k", json!({"f": "v", "n": 5}));
    fake.put("secret", "private", json!({"f": "v"}));
    fake.deny("secret", "private");
    let src = token_source(&fake);
    let class = |r: &'static str| {
        let src = &src;
        async move { fetch(src, r).await.unwrap_err().class() }
    };
    assert_eq!(class("vault://secret/missing#f").await, "not_found");
    assert_eq!(class("vault://secret/k#nofield").await, "not_found");
    assert_eq!(class("vault://secret/k#n").await, "malformed");
    assert_eq!(class("vault://secret/private#f").await, "denied");
    assert_eq!(class("vault://nomount/k#f").await, "not_found");

    let bad = DefaultSources::external().with_vault(cfg(fake.addr(), VaultAuth::Token(secret("hvs.wrong"))));
    assert_eq!(fetch(&bad, "vault://secret/k#f").await.unwrap_err().class(), "denied");

    let down = DefaultSources::external().with_vault(cfg(dead_addr(), VaultAuth::Token(secret("hvs.x"))));
    assert_eq!(fetch(&down, "vault://secret/k#f").await.unwrap_err().class(), "unreachable");
}

#[tokio::test]
async fn namespace_header_is_sent() {
    let fake = FakeVault::start().await.unwrap();
    fake.set_namespace("team-a");
    fake.put("secret", "k", json!({"f": "v"}));
    fake.add_token("hvs.t");
    let without = DefaultSources::external().with_vault(cfg(fake.addr(), VaultAuth::Token(secret("hvs.t"))));
    assert_eq!(fetch(&without, "vault://secret/k#f").await.unwrap_err().class(), "denied");
    let mut c = cfg(fake.addr(), VaultAuth::Token(secret("hvs.t")));
    c.namespace = Some("team-a".into());
    let with = DefaultSources::external().with_vault(c);
    assert_eq!(value(&fetch(&with, "vault://secret/k#f").await.unwrap()), "v");
    assert_eq!(fake.requests().last().unwrap().header("x-vault-namespace"), Some("team-a"));
}

#[tokio::test]
async fn approle_logs_in_once_and_again_when_the_token_is_refused() {
    let fake = FakeVault::start().await.unwrap();
    fake.add_approle("role-1", "sid-1");
    fake.put("secret", "k", json!({"f": "v"}));
    let auth = VaultAuth::AppRole { mount: "approle".into(), role_id: "role-1".into(), secret_id: secret("sid-1") };
    let src = DefaultSources::external().with_vault(cfg(fake.addr(), auth));
    assert_eq!(value(&fetch(&src, "vault://secret/k#f").await.unwrap()), "v");
    assert_eq!(value(&fetch(&src, "vault://secret/k#f").await.unwrap()), "v");
    let paths: Vec<_> = fake.requests().iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    assert_eq!(
        paths,
        [
            ("POST".to_string(), "/v1/auth/approle/login".to_string()),
            ("GET".into(), "/v1/secret/data/k".into()),
            ("GET".into(), "/v1/secret/data/k".into()),
        ]
    );
    assert_eq!(fake.requests()[0].header("x-vault-token"), None);
    assert_eq!(fake.requests()[0].header("content-type"), Some("application/json"));

    fake.revoke_tokens();
    assert_eq!(value(&fetch(&src, "vault://secret/k#f").await.unwrap()), "v");
    let logins = fake.requests().iter().filter(|r| r.path == "/v1/auth/approle/login").count();
    assert_eq!(logins, 2);

    let wrong = DefaultSources::external().with_vault(cfg(
        fake.addr(),
        VaultAuth::AppRole { mount: "approle".into(), role_id: "role-1".into(), secret_id: secret("wrong") },
    ));
    assert_eq!(fetch(&wrong, "vault://secret/k#f").await.unwrap_err().class(), "denied");
}

#[tokio::test]
async fn token_file_is_read() {
    let fake = FakeVault::start().await.unwrap();
    fake.add_token("hvs.from-file");
    fake.put("secret", "k", json!({"f": "v"}));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("token");
    std::fs::write(&p, "hvs.from-file\n").unwrap();
    let src = DefaultSources::external().with_vault(cfg(fake.addr(), VaultAuth::TokenFile(p)));
    assert_eq!(value(&fetch(&src, "vault://secret/k#f").await.unwrap()), "v");
}

#[tokio::test]
async fn delivery_writes_one_field_with_check_and_set() {
    let fake = FakeVault::start().await.unwrap();
    fake.put("secret", "svc/billing", json!({"api_key": "old", "owner": "payments"}));
    let src = token_source(&fake);
    let v = src.deliver(&r("vault://secret/svc/billing#api_key"), &secret("kw_prod_new")).await.unwrap();
    assert_eq!(v.as_deref(), Some("2"));
    assert_eq!(fake.current("secret", "svc/billing").unwrap(), json!({"api_key": "kw_prod_new", "owner": "payments"}));
    let f = fetch(&src, "vault://secret/svc/billing#api_key").await.unwrap();
    assert_eq!(value(&f), "kw_prod_new");
    assert_eq!(previous(&f), Some("old"));

    // a new path is created (cas 0)
    let v = src.deliver(&r("vault://secret/svc/new#k"), &secret("kw_stg_x")).await.unwrap();
    assert_eq!(v.as_deref(), Some("1"));
    assert_eq!(fake.current("secret", "svc/new").unwrap(), json!({"k": "kw_stg_x"}));

    fake.deny("secret", "svc/locked");
    let e = src.deliver(&r("vault://secret/svc/locked#k"), &secret("x")).await.unwrap_err();
    assert_eq!(e.class(), "denied");
}

#[test]
fn config_debug_hides_credentials() {
    let c = cfg(
        "http://v".into(),
        VaultAuth::AppRole { mount: "approle".into(), role_id: "r".into(), secret_id: secret("very-secret-id") },
    );
    assert!(!format!("{c:?}").contains("very-secret"));
}
