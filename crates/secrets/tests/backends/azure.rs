use super::*;
use keyward_secrets::{AzureAuth, AzureConfig, DefaultSources};
use keyward_testkit::fakes::azure::FakeAzure;
use std::time::Duration;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

fn cfg(fake: &FakeAzure, auth: AzureAuth) -> AzureConfig {
    AzureConfig {
        authority: fake.url(),
        vault_suffix: "vault.azure.net".into(),
        endpoint: Some(fake.url()),
        auth,
        timeout: Duration::from_secs(5),
    }
}

fn client_secret(secret_value: &str) -> AzureAuth {
    AzureAuth::ClientSecret { tenant_id: TENANT.into(), client_id: CLIENT.into(), client_secret: secret(secret_value) }
}

#[tokio::test]
async fn client_credentials_then_get_secret() {
    let fake = FakeAzure::start(TENANT, CLIENT, "app-secret").await.unwrap();
    fake.set_secret("kv-prod", "claude-key", "sk-ant-az1");
    let v2 = fake.set_secret("kv-prod", "claude-key", "sk-ant-az2");
    let src = DefaultSources::external().with_azure(cfg(&fake, client_secret("app-secret")));
    let f = fetch(&src, "azure-kv://kv-prod/claude-key").await.unwrap();
    assert_eq!(value(&f), "sk-ant-az2");
    assert_eq!(f.version.as_deref(), Some(v2.as_str()));

    let reqs = fake.requests();
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(reqs[1].path, "/secrets/claude-key");
    assert_eq!(reqs[1].query.as_deref(), Some("api-version=7.4"));
    assert_eq!(reqs[1].header("host"), Some("kv-prod.vault.azure.net"));
    assert_eq!(reqs[1].header("authorization"), Some("<present>"));

    fetch(&src, "azure-kv://kv-prod/claude-key").await.unwrap();
    assert_eq!(fake.requests().iter().filter(|r| r.method == "POST").count(), 1);
}

#[tokio::test]
async fn managed_identity_system_and_user_assigned() {
    let fake = FakeAzure::start(TENANT, CLIENT, "app-secret").await.unwrap();
    fake.set_secret("kv1", "claude", "sk-ant-mi");
    let mi = |client_id: Option<&str>| {
        cfg(
            &fake,
            AzureAuth::ManagedIdentity {
                client_id: client_id.map(str::to_string),
                app_service: None,
                imds: fake.url(),
            },
        )
    };
    // no identity on the VM yet
    let src = DefaultSources::external().with_azure(mi(None));
    assert_eq!(fetch(&src, "azure-kv://kv1/claude").await.unwrap_err().class(), "denied");

    fake.enable_managed_identity(None);
    let src = DefaultSources::external().with_azure(mi(None));
    assert_eq!(value(&fetch(&src, "azure-kv://kv1/claude").await.unwrap()), "sk-ant-mi");

    fake.enable_managed_identity(Some("uami-1"));
    let src = DefaultSources::external().with_azure(mi(Some("uami-1")));
    assert_eq!(value(&fetch(&src, "azure-kv://kv1/claude").await.unwrap()), "sk-ant-mi");
    let imds: Vec<_> = fake.requests().into_iter().filter(|r| r.path == "/metadata/identity/oauth2/token").collect();
    assert!(imds.iter().all(|r| r.header("metadata") == Some("true")));
    assert!(imds.last().unwrap().query.as_deref().unwrap().contains("client_id=uami-1"));
}

#[tokio::test]
async fn errors_are_classified() {
    let fake = FakeAzure::start(TENANT, CLIENT, "app-secret").await.unwrap();
    fake.set_secret("kv1", "locked", "x");
    fake.deny("kv1", "locked");
    fake.set_secret("kv1", "off", "x");
    fake.disable_current("kv1", "off");
    let src = DefaultSources::external().with_azure(cfg(&fake, client_secret("app-secret")));
    assert_eq!(fetch(&src, "azure-kv://kv1/missing").await.unwrap_err().class(), "not_found");
    assert_eq!(fetch(&src, "azure-kv://kv1/locked").await.unwrap_err().class(), "denied");
    assert_eq!(fetch(&src, "azure-kv://kv1/off").await.unwrap_err().class(), "denied");
    assert_eq!(fetch(&src, "azure-kv://bad.host/x").await.unwrap_err().class(), "malformed");

    let wrong = DefaultSources::external().with_azure(cfg(&fake, client_secret("nope")));
    assert_eq!(fetch(&wrong, "azure-kv://kv1/locked").await.unwrap_err().class(), "denied");
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once() {
    let fake = FakeAzure::start(TENANT, CLIENT, "app-secret").await.unwrap();
    fake.set_secret("kv1", "claude", "v");
    let src = DefaultSources::external().with_azure(cfg(&fake, client_secret("app-secret")));
    fetch(&src, "azure-kv://kv1/claude").await.unwrap();
    fake.revoke_tokens();
    assert_eq!(value(&fetch(&src, "azure-kv://kv1/claude").await.unwrap()), "v");
    assert_eq!(fake.requests().iter().filter(|r| r.method == "POST").count(), 2);
}
