//! The AWS backend configured only by the standard environment (region,
//! credentials, `AWS_ENDPOINT_URL`), as `keyward serve` and `keyward secrets
//! check` use it, against a real moto server. Its own test binary: it sets
//! process environment variables.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward_secrets::{DefaultSources, SecretRef, SecretSource};
use keyward_testkit::fakes::moto::MotoServer;
use secrecy::ExposeSecret;

#[tokio::test]
async fn aws_endpoint_url_from_the_environment_reaches_moto() {
    let moto = MotoServer::start();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", moto.url().as_str()),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_CONFIG_FILE", "/nonexistent/keyward-test"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/keyward-test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        std::env::set_var(k, v);
    }
    let src = DefaultSources::external();
    let r: SecretRef = "aws-sm://env/claude".parse().unwrap();
    assert_eq!(src.fetch(&r).await.unwrap_err().class(), "not_found");
    keyward_secrets::SecretSink::deliver(&src, &r, &secrecy::SecretString::from("sk-ant-env".to_string()))
        .await
        .unwrap();
    let f = src.fetch_versioned(&r).await.unwrap();
    assert_eq!(f.value.expose_secret(), "sk-ant-env");
    assert!(f.version.is_some());
}
