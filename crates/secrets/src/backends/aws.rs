//! `aws-sm://SECRET_ID[#JSON_FIELD]` — AWS Secrets Manager through the
//! official AWS SDK for Rust, on rustls with the ring provider.
//!
//! Configuration is the SDK's standard chain: region (`AWS_REGION`, profile),
//! credentials (env, profile, web identity, ECS, IMDS, `credential_process`),
//! and the endpoint override `AWS_ENDPOINT_URL` /
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` (how the tests reach moto).

use crate::sources::clean;
use crate::{FetchError, Fetched};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::time::Duration;
use zeroize::Zeroizing;

pub(crate) struct Aws {
    client: tokio::sync::OnceCell<Result<Client, FetchError>>,
}

/// An SDK client from `loader` with keyward's transport: rustls + ring,
/// two attempts, 3 s to connect, 10 s per operation.
pub async fn aws_client(loader: ConfigLoader) -> Result<Client, FetchError> {
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let conf = loader
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await;
    if conf.region().is_none() {
        return Err(FetchError::NotConfigured("aws-sm: no region (set AWS_REGION or a profile region)".into()));
    }
    Ok(Client::new(&conf))
}

impl Aws {
    pub fn from_env() -> Self {
        Aws { client: tokio::sync::OnceCell::new() }
    }

    pub fn with_client(client: Client) -> Self {
        Aws { client: tokio::sync::OnceCell::new_with(Some(Ok(client))) }
    }

    async fn client(&self) -> Result<&Client, FetchError> {
        self.client
            .get_or_init(|| aws_client(aws_config::defaults(BehaviorVersion::latest())))
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn get(&self, id: &str, stage: &str) -> Result<GetSecretValueOutput, FetchError> {
        self.client().await?.get_secret_value().secret_id(id).version_stage(stage).send().await.map_err(classify)
    }

    pub async fn fetch(&self, id: &str, field: Option<&str>) -> Result<Fetched, FetchError> {
        let cur = self.get(id, "AWSCURRENT").await?;
        let value = extract(&cur, field)?;
        let previous = match self.get(id, "AWSPREVIOUS").await {
            Ok(prev) => extract(&prev, field).ok(),
            Err(e) => {
                tracing::debug!(reason = e.class(), "aws-sm: no AWSPREVIOUS value");
                None
            }
        };
        Ok(Fetched { value, version: cur.version_id().map(str::to_string), previous })
    }

    /// `put-secret-value` (the new value becomes AWSCURRENT, the old one
    /// AWSPREVIOUS); a secret that does not exist yet is created. With a
    /// field, the current JSON object is read and only that field replaced.
    pub async fn deliver(
        &self,
        id: &str,
        field: Option<&str>,
        value: &SecretString,
    ) -> Result<Option<String>, FetchError> {
        let client = self.client().await?;
        let body = match field {
            None => Zeroizing::new(value.expose_secret().to_string()),
            Some(f) => {
                let mut obj = match self.get(id, "AWSCURRENT").await {
                    Ok(cur) => {
                        let text = Zeroizing::new(string_of(&cur)?);
                        match serde_json::from_str::<Value>(&text) {
                            Ok(Value::Object(m)) => m,
                            _ => {
                                return Err(FetchError::Malformed(
                                    "aws-sm: the current value is not a JSON object".into(),
                                ))
                            }
                        }
                    }
                    Err(FetchError::NotFound) => serde_json::Map::new(),
                    Err(e) => return Err(e),
                };
                obj.insert(f.to_string(), Value::String(value.expose_secret().to_string()));
                let obj = Value::Object(obj);
                let text = Zeroizing::new(obj.to_string());
                wipe(obj);
                text
            }
        };
        match client.put_secret_value().secret_id(id).secret_string(body.as_str()).send().await.map_err(classify) {
            Ok(out) => Ok(out.version_id().map(str::to_string)),
            Err(FetchError::NotFound) => client
                .create_secret()
                .name(id)
                .secret_string(body.as_str())
                .send()
                .await
                .map(|out| out.version_id().map(str::to_string))
                .map_err(classify),
            Err(e) => Err(e),
        }
    }
}

fn string_of(out: &GetSecretValueOutput) -> Result<String, FetchError> {
    if let Some(s) = out.secret_string() {
        return Ok(s.to_string());
    }
    if let Some(b) = out.secret_binary() {
        return String::from_utf8(b.as_ref().to_vec())
            .map_err(|_| FetchError::Malformed("aws-sm: binary secret is not UTF-8".into()));
    }
    Err(FetchError::Malformed("aws-sm: the secret has no value".into()))
}

fn extract(out: &GetSecretValueOutput, field: Option<&str>) -> Result<SecretString, FetchError> {
    let text = Zeroizing::new(string_of(out)?);
    match field {
        None => clean(&text),
        Some(f) => {
            let v: Value = serde_json::from_str(&text).map_err(|_| {
                FetchError::Malformed("aws-sm: the value is not JSON, but the reference names a field".into())
            })?;
            let found = match v.get(f) {
                Some(Value::String(s)) => clean(s),
                Some(_) => Err(FetchError::Malformed(format!("aws-sm: field {f:?} is not a string"))),
                None => Err(FetchError::NotFound),
            };
            wipe(v);
            found
        }
    }
}

/// Overwrite the string values of a parsed secret before it is dropped.
fn wipe(mut v: Value) {
    if let Value::Object(m) = &mut v {
        for v in m.values_mut() {
            if let Value::String(s) = v {
                zeroize::Zeroize::zeroize(s);
            }
        }
    }
}

/// The SDK's error by class; the service's error code is safe to show, its
/// message is not needed.
fn classify<E: ProvideErrorMetadata>(e: SdkError<E, HttpResponse>) -> FetchError {
    match e {
        SdkError::ConstructionFailure(_) => {
            FetchError::NotConfigured("aws-sm: cannot build the request (are credentials configured?)".into())
        }
        SdkError::TimeoutError(_) => FetchError::Unreachable("aws-sm: timed out".into()),
        SdkError::DispatchFailure(d) => {
            if d.is_io() || d.is_timeout() {
                FetchError::Unreachable("aws-sm: cannot connect".into())
            } else {
                FetchError::NotConfigured("aws-sm: request not sent (are credentials configured?)".into())
            }
        }
        SdkError::ResponseError(_) => FetchError::Unreachable("aws-sm: unreadable response".into()),
        SdkError::ServiceError(s) => match s.err().code() {
            Some("ResourceNotFoundException") => FetchError::NotFound,
            // a secret scheduled for deletion
            Some("InvalidRequestException") => FetchError::NotFound,
            Some(
                "AccessDeniedException"
                | "AccessDenied"
                | "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "ExpiredTokenException"
                | "InvalidSignatureException"
                | "SignatureDoesNotMatch"
                | "IncompleteSignature"
                | "DecryptionFailure",
            ) => FetchError::Denied,
            _ if matches!(s.raw().status().as_u16(), 401 | 403) => FetchError::Denied,
            Some(code) => FetchError::Unreachable(format!("aws-sm: {}", safe_code(code))),
            None => FetchError::Unreachable(format!("aws-sm: service error (HTTP {})", s.raw().status().as_u16())),
        },
        _ => FetchError::Unreachable("aws-sm: request failed".into()),
    }
}

fn safe_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).take(64).collect()
}
