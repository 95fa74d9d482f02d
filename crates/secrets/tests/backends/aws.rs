//! AWS Secrets Manager through the official SDK against a real moto server.

use super::*;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::config::Credentials;
use keyward_secrets::{aws_client, CacheError, DefaultSources, SecretCache};
use keyward_testkit::fakes::moto::MotoServer;
use std::sync::Arc;
use std::time::Duration;

async fn client(moto: &MotoServer, key_id: &str) -> aws_sdk_secretsmanager::Client {
    aws_client(
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(moto.url())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(key_id, "testing-secret", None, None, "test")),
    )
    .await
    .unwrap()
}

async fn create(c: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> String {
    c.create_secret().name(name).secret_string(value).send().await.unwrap().version_id().unwrap().to_string()
}

#[tokio::test]
async fn create_read_by_stage_and_rotate_with_put_secret_value() {
    let moto = MotoServer::start();
    let c = client(&moto, "testing").await;
    let v1 = create(&c, "prod/claude", "sk-ant-aws-1").await;
    let src = DefaultSources::external().with_aws(c.clone());

    let f = fetch(&src, "aws-sm://prod/claude").await.unwrap();
    assert_eq!(value(&f), "sk-ant-aws-1");
    assert_eq!(f.version.as_deref(), Some(v1.as_str()));
    assert_eq!(previous(&f), None);

    // rotate: put-secret-value (through the sink) makes the new value
    // AWSCURRENT and the old one AWSPREVIOUS
    let v2 = src.deliver(&r("aws-sm://prod/claude"), &secret("sk-ant-aws-2")).await.unwrap().unwrap();
    assert_ne!(v1, v2);
    let f = fetch(&src, "aws-sm://prod/claude").await.unwrap();
    assert_eq!(value(&f), "sk-ant-aws-2");
    assert_eq!(f.version.as_deref(), Some(v2.as_str()));
    assert_eq!(previous(&f), Some("sk-ant-aws-1"));

    // what the SDK sees by stage agrees
    let prev = c.get_secret_value().secret_id("prod/claude").version_stage("AWSPREVIOUS").send().await.unwrap();
    assert_eq!(prev.version_id(), Some(v1.as_str()));
}

#[tokio::test]
async fn json_fields_read_and_delivered_in_place() {
    let moto = MotoServer::start();
    let c = client(&moto, "testing").await;
    create(&c, "svc/billing", r#"{"api_key":"kw_prod_old","owner":"payments"}"#).await;
    let src = DefaultSources::external().with_aws(c.clone());
    let f = fetch(&src, "aws-sm://svc/billing#api_key").await.unwrap();
    assert_eq!(value(&f), "kw_prod_old");
    assert_eq!(fetch(&src, "aws-sm://svc/billing#nope").await.unwrap_err().class(), "not_found");

    src.deliver(&r("aws-sm://svc/billing#api_key"), &secret("kw_prod_new")).await.unwrap();
    let now = c.get_secret_value().secret_id("svc/billing").send().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(now.secret_string().unwrap()).unwrap();
    assert_eq!(v, serde_json::json!({"api_key": "kw_prod_new", "owner": "payments"}));
    let f = fetch(&src, "aws-sm://svc/billing#api_key").await.unwrap();
    assert_eq!(previous(&f), Some("kw_prod_old"));

    create(&c, "plain", "not json").await;
    assert_eq!(fetch(&src, "aws-sm://plain#f").await.unwrap_err().class(), "malformed");
}

#[tokio::test]
async fn missing_secrets_and_delivery_to_a_new_secret() {
    let moto = MotoServer::start();
    let c = client(&moto, "testing").await;
    let src = DefaultSources::external().with_aws(c.clone());
    let e = fetch(&src, "aws-sm://no/such/secret").await.unwrap_err();
    assert_eq!(e, keyward_secrets::FetchError::NotFound);
    // delivering to a secret that does not exist creates it
    let v = src.deliver(&r("aws-sm://svc/new"), &secret("kw_stg_1")).await.unwrap();
    assert!(v.is_some());
    assert_eq!(value(&fetch(&src, "aws-sm://svc/new").await.unwrap()), "kw_stg_1");
}

#[tokio::test]
async fn rotation_is_seen_within_one_ttl_and_the_previous_value_stays_usable() {
    let moto = MotoServer::start();
    let c = client(&moto, "testing").await;
    create(&c, "prod/claude", "sk-ant-one").await;
    let src = Arc::new(DefaultSources::external().with_aws(c.clone()));
    let ttl = Duration::from_millis(200);
    let cache = SecretCache::new(src.clone(), ttl, Duration::from_secs(60));
    let e = cache.entry(&r("aws-sm://prod/claude"));
    let first = cache.get(&e).await.unwrap();
    assert_eq!(first.secret().expose_secret(), "sk-ant-one");
    assert!(first.version().is_some());
    assert!(cache.previous(&e).is_none());

    src.deliver(&r("aws-sm://prod/claude"), &secret("sk-ant-two")).await.unwrap();
    // until the TTL passes the cached value serves
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let now = cache.get(&e).await.unwrap();
    assert_eq!(now.secret().expose_secret(), "sk-ant-two");
    assert_ne!(now.version(), first.version());
    let prev = cache.previous(&e).unwrap();
    assert_eq!(prev.secret().expose_secret(), "sk-ant-one");
    assert_eq!(cache.stats().rotations, 1);
}

#[tokio::test]
async fn outage_serves_the_stale_value_then_fails_closed() {
    let mut moto = MotoServer::start();
    let c = client(&moto, "testing").await;
    create(&c, "prod/claude", "sk-ant-stale").await;
    let src = Arc::new(DefaultSources::external().with_aws(c));
    let ttl = Duration::from_millis(100);
    let stale = Duration::from_millis(1500);
    let cache = SecretCache::new(src, ttl, stale);
    let e = cache.entry(&r("aws-sm://prod/claude"));
    let fetched_at = std::time::Instant::now();
    cache.get(&e).await.unwrap();

    moto.stop();
    tokio::time::sleep(ttl + Duration::from_millis(20)).await;
    let v = cache.get(&e).await.unwrap();
    assert_eq!(v.secret().expose_secret(), "sk-ant-stale");
    let stats = cache.stats();
    assert!(stats.failures >= 1, "{stats:?}");
    assert!(stats.stale_serves >= 1, "{stats:?}");

    // past the stale window: fail closed, the reason is a class
    let wait = stale.saturating_sub(fetched_at.elapsed()) + Duration::from_millis(100);
    tokio::time::sleep(wait).await;
    match cache.get(&e).await {
        Err(CacheError::Unavailable(err)) => assert_eq!(err.class(), "unreachable"),
        Ok(_) => panic!("served a value past the stale window"),
    }
    assert!(cache.stats().unavailable >= 1);
}

#[tokio::test]
async fn permission_errors_are_denied() {
    let moto = MotoServer::start();
    let c = client(&moto, "testing").await;
    create(&c, "prod/claude", "sk-ant-x").await;
    // from here moto checks every request's signature against its IAM: the
    // access key "testing" is unknown to it
    moto.enforce_auth().unwrap();
    let src = DefaultSources::external().with_aws(c);
    let e = fetch(&src, "aws-sm://prod/claude").await.unwrap_err();
    assert_eq!(e.class(), "denied", "{e}");
    let e = src.deliver(&r("aws-sm://prod/claude"), &secret("x")).await.unwrap_err();
    assert_eq!(e.class(), "denied", "{e}");
}

/// Create an IAM user in moto with an inline policy allowing `actions` on
/// every secret (moto evaluates actions, not secretsmanager resource ARNs),
/// with boto3 (installed with moto); returns its access key id and secret.
fn iam_user(moto: &MotoServer, name: &str, actions: &[&str]) -> (String, String) {
    let script = r#"
import boto3, json, sys
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
name, actions = sys.argv[2], json.loads(sys.argv[3])
iam.create_user(UserName=name)
if actions:
    iam.put_user_policy(UserName=name, PolicyName="keyward", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
k = iam.create_access_key(UserName=name)["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
"#;
    let actions = serde_json::to_string(actions).unwrap();
    let out = std::process::Command::new("python3").args(["-c", script, &moto.url(), name, &actions]).output().unwrap();
    assert!(out.status.success(), "boto3 setup failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut words = text.split_whitespace();
    (words.next().unwrap().to_string(), words.next().unwrap().to_string())
}

async fn user_source(moto: &MotoServer, (id, key): (String, String)) -> DefaultSources {
    let c = aws_client(
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(moto.url())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(id, key, None, None, "test")),
    )
    .await
    .unwrap();
    DefaultSources::external().with_aws(c)
}

#[tokio::test]
async fn iam_policies_that_do_not_allow_the_action_are_denied() {
    let moto = MotoServer::start();
    let admin = client(&moto, "testing").await;
    create(&admin, "prod/claude", "sk-ant-iam").await;
    let reader = iam_user(&moto, "reader", &["secretsmanager:GetSecretValue"]);
    let nobody = iam_user(&moto, "nobody", &[]);
    moto.enforce_auth().unwrap();

    let reader = user_source(&moto, reader).await;
    assert_eq!(value(&fetch(&reader, "aws-sm://prod/claude").await.unwrap()), "sk-ant-iam");
    // the reader may not PutSecretValue
    let e = reader.deliver(&r("aws-sm://prod/claude"), &secret("x")).await.unwrap_err();
    assert_eq!(e.class(), "denied", "{e}");
    // a known identity without any permission
    let nobody = user_source(&moto, nobody).await;
    let e = fetch(&nobody, "aws-sm://prod/claude").await.unwrap_err();
    assert_eq!(e.class(), "denied", "{e}");
}
