//! Backends against real servers (moto for AWS) and protocol-faithful fakes
//! (Vault, GCP, Azure) from `keyward_testkit::fakes`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aws;
mod azure;
mod gcp;
mod vault;

use keyward_secrets::{FetchError, Fetched, SecretRef, SecretSink, SecretSource};
use secrecy::{ExposeSecret, SecretString};

pub fn r(s: &str) -> SecretRef {
    s.parse().unwrap()
}

pub async fn fetch(src: &impl SecretSource, reference: &str) -> Result<Fetched, FetchError> {
    src.fetch_versioned(&r(reference)).await
}

pub fn value(f: &Fetched) -> &str {
    f.value.expose_secret()
}

pub fn previous(f: &Fetched) -> Option<&str> {
    f.previous.as_ref().map(|p| p.expose_secret())
}

pub fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

/// A loopback address with nothing listening.
pub fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    format!("http://{a}")
}

#[tokio::test]
async fn read_only_sources_refuse_delivery() {
    let src = keyward_secrets::DefaultSources::external();
    for reference in ["env:KW_X", "gcp-sm://projects/p/secrets/s", "azure-kv://v1/s", "local:x"] {
        let e = src.deliver(&r(reference), &secret("v")).await.unwrap_err();
        assert_eq!(e.class(), "read_only", "{reference}");
        assert!(e.to_string().contains("read-only"));
    }
}

#[tokio::test]
async fn local_without_a_store_is_not_configured() {
    let src = keyward_secrets::DefaultSources::external();
    let e = fetch(&src, "local:prod").await.unwrap_err();
    assert_eq!(e.class(), "not_configured");
}

#[tokio::test]
async fn exec_runs_only_where_allowed() {
    let on = keyward_secrets::DefaultSources::external();
    assert_eq!(value(&fetch(&on, "exec:printf sk-ant-exec").await.unwrap()), "sk-ant-exec");
    let off = keyward_secrets::DefaultSources::external().allow_exec(false);
    let e = fetch(&off, "exec:printf sk-ant-exec").await.unwrap_err();
    assert_eq!(e.class(), "not_configured");
    let e = off.deliver(&r("exec:cat"), &secret("x")).await.unwrap_err();
    assert_eq!(e.class(), "not_configured");
}
