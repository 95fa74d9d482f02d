use super::*;
use keyward_secrets::{DefaultSources, GcpAuth, GcpConfig, ServiceAccountKey};
use keyward_testkit::fakes::gcp::FakeGcp;
use std::time::Duration;

fn sa_source(fake: &FakeGcp) -> DefaultSources {
    let key = ServiceAccountKey::from_json(&fake.service_account_json()).unwrap();
    DefaultSources::external().with_gcp(GcpConfig {
        endpoint: fake.endpoint(),
        auth: GcpAuth::ServiceAccount(key),
        timeout: Duration::from_secs(5),
    })
}

#[tokio::test]
async fn service_account_jwt_flow_then_access_latest_and_previous() {
    let fake = FakeGcp::start().await.unwrap();
    fake.add_version("p1", "claude", "sk-ant-g1");
    fake.add_version("p1", "claude", "sk-ant-g2");
    let src = sa_source(&fake);
    let f = fetch(&src, "gcp-sm://projects/p1/secrets/claude").await.unwrap();
    assert_eq!(value(&f), "sk-ant-g2");
    assert_eq!(f.version.as_deref(), Some("2"));
    assert_eq!(previous(&f), Some("sk-ant-g1"));

    let reqs = fake.requests();
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/token");
    assert_eq!(reqs[0].header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(reqs[1].method, "GET");
    assert_eq!(reqs[1].path, "/v1/projects/p1/secrets/claude/versions/latest:access");
    assert_eq!(reqs[1].header("authorization"), Some("<present>"));
    assert_eq!(reqs[2].path, "/v1/projects/p1/secrets/claude/versions/1:access");

    // the token is reused until it expires
    fetch(&src, "gcp-sm://projects/p1/secrets/claude").await.unwrap();
    assert_eq!(fake.requests().iter().filter(|r| r.path == "/token").count(), 1);
}

#[tokio::test]
async fn a_pinned_version_has_no_previous() {
    let fake = FakeGcp::start().await.unwrap();
    fake.add_version("p1", "claude", "one");
    fake.add_version("p1", "claude", "two");
    let f = fetch(&sa_source(&fake), "gcp-sm://projects/p1/secrets/claude/versions/1").await.unwrap();
    assert_eq!(value(&f), "one");
    assert_eq!(f.version.as_deref(), Some("1"));
    assert_eq!(previous(&f), None);
}

#[tokio::test]
async fn metadata_server_token() {
    let fake = FakeGcp::start().await.unwrap();
    fake.add_version("p1", "claude", "sk-ant-md");
    let src = DefaultSources::external().with_gcp(GcpConfig {
        endpoint: fake.endpoint(),
        auth: GcpAuth::Metadata { host: fake.metadata_host() },
        timeout: Duration::from_secs(5),
    });
    let f = fetch(&src, "gcp-sm://projects/p1/secrets/claude").await.unwrap();
    assert_eq!(value(&f), "sk-ant-md");
    let first = &fake.requests()[0];
    assert_eq!(first.path, "/computeMetadata/v1/instance/service-accounts/default/token");
    assert_eq!(first.header("metadata-flavor"), Some("Google"));
}

#[tokio::test]
async fn errors_are_classified() {
    let fake = FakeGcp::start().await.unwrap();
    fake.add_version("p1", "claude", "v1");
    fake.add_version("p1", "locked", "v1");
    fake.deny("p1", "locked");
    fake.add_version("p1", "off", "v1");
    fake.disable_version("p1", "off", 1);
    let src = sa_source(&fake);
    let class = |r: &'static str| {
        let src = &src;
        async move { fetch(src, r).await.unwrap_err().class() }
    };
    assert_eq!(class("gcp-sm://projects/p1/secrets/missing").await, "not_found");
    assert_eq!(class("gcp-sm://projects/p1/secrets/claude/versions/9").await, "not_found");
    assert_eq!(class("gcp-sm://projects/p1/secrets/off/versions/1").await, "not_found");
    assert_eq!(class("gcp-sm://projects/p1/secrets/locked").await, "denied");

    // a key the token endpoint does not accept (wrong account)
    let json = fake.service_account_json().replace("keyward-test@", "someone-else@");
    let key = ServiceAccountKey::from_json(&json).unwrap();
    let wrong = DefaultSources::external().with_gcp(GcpConfig {
        endpoint: fake.endpoint(),
        auth: GcpAuth::ServiceAccount(key),
        timeout: Duration::from_secs(5),
    });
    assert_eq!(fetch(&wrong, "gcp-sm://projects/p1/secrets/claude").await.unwrap_err().class(), "denied");
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once() {
    let fake = FakeGcp::start().await.unwrap();
    fake.add_version("p1", "claude", "v1");
    let src = sa_source(&fake);
    fetch(&src, "gcp-sm://projects/p1/secrets/claude").await.unwrap();
    fake.revoke_tokens();
    let f = fetch(&src, "gcp-sm://projects/p1/secrets/claude").await.unwrap();
    assert_eq!(value(&f), "v1");
    assert_eq!(fake.requests().iter().filter(|r| r.path == "/token").count(), 2);
}

#[test]
fn only_service_account_files_are_accepted() {
    let e = ServiceAccountKey::from_json(r#"{"type":"authorized_user","client_email":"x","private_key":"y"}"#);
    assert_eq!(e.err().map(|e| e.class()), Some("not_configured"));
}
