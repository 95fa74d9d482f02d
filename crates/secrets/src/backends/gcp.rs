//! `gcp-sm://projects/P/secrets/S[/versions/V]` — Google Secret Manager over
//! its REST API: `GET {endpoint}/v1/projects/P/secrets/S/versions/V:access`
//! (V defaults to `latest`; without a pinned version, version N-1 is read as
//! the previous value). The payload's CRC32C is checked when sent.
//!
//! Auth: a service-account key file named by `GOOGLE_APPLICATION_CREDENTIALS`
//! (a JWT signed RS256 with the key and exchanged at the file's `token_uri`,
//! OAuth 2.0 JWT bearer grant), else the metadata server
//! (`GCE_METADATA_HOST`, default `metadata.google.internal`).
//! `KEYWARD_GCP_SECRETMANAGER_URL` overrides the API endpoint (tests).

use super::token::{lifetime, TokenCache};
use crate::http::{encode_path, form, Http, Response};
use crate::{FetchError, Fetched};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;
use zeroize::Zeroizing;

pub const DEFAULT_ENDPOINT: &str = "https://secretmanager.googleapis.com";
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fields of a service-account key file keyward uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    #[serde(rename = "type")]
    pub kind: String,
    pub client_email: String,
    pub private_key_id: Option<String>,
    #[serde(deserialize_with = "secret_string")]
    pub private_key: SecretString,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

fn secret_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

impl ServiceAccountKey {
    pub fn from_json(text: &str) -> Result<Self, FetchError> {
        let k: ServiceAccountKey = serde_json::from_str(text).map_err(|_| {
            FetchError::NotConfigured("gcp-sm: the credentials file is not a service-account key".into())
        })?;
        if k.kind != "service_account" {
            return Err(FetchError::NotConfigured(format!(
                "gcp-sm: credentials of type {:?} are not supported (use a service-account key or the metadata server)",
                k.kind
            )));
        }
        Ok(k)
    }
}

#[derive(Clone)]
pub enum GcpAuth {
    ServiceAccount(ServiceAccountKey),
    /// `host[:port]` of the metadata server.
    Metadata {
        host: String,
    },
}

#[derive(Clone)]
pub struct GcpConfig {
    pub endpoint: String,
    pub auth: GcpAuth,
    pub timeout: Duration,
}

impl std::fmt::Debug for GcpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            GcpAuth::ServiceAccount(k) => format!("service account {}", k.client_email),
            GcpAuth::Metadata { host } => format!("metadata server {host}"),
        };
        f.debug_struct("GcpConfig").field("endpoint", &self.endpoint).field("auth", &auth).finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl GcpConfig {
    pub fn from_env() -> Result<Self, FetchError> {
        let auth = match env("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(p) => {
                let text = Zeroizing::new(
                    std::fs::read_to_string(&p)
                        .map_err(|_| FetchError::NotConfigured(format!("gcp-sm: cannot read {p}")))?,
                );
                GcpAuth::ServiceAccount(ServiceAccountKey::from_json(&text)?)
            }
            None => GcpAuth::Metadata {
                host: env("GCE_METADATA_HOST").unwrap_or_else(|| "metadata.google.internal".into()),
            },
        };
        Ok(GcpConfig {
            endpoint: env("KEYWARD_GCP_SECRETMANAGER_URL")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_string(),
            auth,
            timeout: Duration::from_secs(10),
        })
    }
}

pub(crate) struct Gcp {
    cfg: GcpConfig,
    http: Http,
    token: TokenCache,
}

#[derive(Deserialize)]
struct Access {
    name: String,
    payload: Payload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    data: String,
    data_crc32c: Option<String>,
}

impl Gcp {
    pub fn new(cfg: GcpConfig) -> Self {
        let http = Http::new(cfg.timeout);
        Gcp { cfg, http, token: TokenCache::new() }
    }

    async fn obtain_token(&self) -> Result<(SecretString, Duration), FetchError> {
        let resp = match &self.cfg.auth {
            GcpAuth::ServiceAccount(key) => {
                let assertion = Zeroizing::new(signed_jwt(key)?);
                let body = Zeroizing::new(form(&[("grant_type", JWT_GRANT), ("assertion", &assertion)]));
                let req = Request::builder()
                    .method(Method::POST)
                    .uri(&key.token_uri)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(body.as_bytes().to_vec())))
                    .map_err(|_| FetchError::NotConfigured("gcp-sm: token_uri is not a valid URL".into()))?;
                self.http.send(req).await?
            }
            GcpAuth::Metadata { host } => {
                let req = Request::builder()
                    .uri(format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token"))
                    .header("metadata-flavor", "Google")
                    .body(Full::new(Bytes::new()))
                    .map_err(|_| FetchError::NotConfigured("gcp-sm: GCE_METADATA_HOST is not a valid host".into()))?;
                self.http.send(req).await?
            }
        };
        match resp.status {
            StatusCode::OK => {}
            // OAuth answers a refused grant with 400 invalid_grant
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(FetchError::Denied)
            }
            s => return Err(FetchError::Unreachable(format!("gcp-sm: token endpoint answered HTTP {}", s.as_u16()))),
        }
        token_of(&resp, "gcp-sm token")
    }

    async fn access(&self, secret: &str, version: &str) -> Result<(SecretString, String), FetchError> {
        let path = format!("/v1/{}/versions/{}:access", encode_path(secret), encode_path(version));
        let mut retried = false;
        loop {
            let token = self.token.get(|| self.obtain_token()).await?;
            let mut auth = http::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| FetchError::Malformed("gcp-sm: access token is not a valid header".into()))?;
            auth.set_sensitive(true);
            let req = Request::builder()
                .uri(format!("{}{path}", self.cfg.endpoint))
                .header("authorization", auth)
                .header("accept", "application/json")
                .body(Full::new(Bytes::new()))
                .map_err(|_| FetchError::NotConfigured("gcp-sm: the endpoint is not a valid URL".into()))?;
            let resp = self.http.send(req).await?;
            match resp.status.as_u16() {
                200 => {}
                401 if !retried => {
                    // the token expired or was revoked early: get a new one, once
                    self.token.clear().await;
                    retried = true;
                    continue;
                }
                401 | 403 => return Err(FetchError::Denied),
                // a disabled or destroyed version: FAILED_PRECONDITION
                404 | 400 => return Err(FetchError::NotFound),
                s => return Err(FetchError::Unreachable(format!("gcp-sm answered HTTP {s}"))),
            }
            let a: Access = resp.json("gcp-sm access")?;
            let data = Zeroizing::new(
                STANDARD
                    .decode(a.payload.data.as_bytes())
                    .map_err(|_| FetchError::Malformed("gcp-sm: payload is not base64".into()))?,
            );
            if let Some(sum) = &a.payload.data_crc32c {
                if sum.parse::<u64>().ok() != Some(u64::from(crc32c(&data))) {
                    return Err(FetchError::Malformed("gcp-sm: payload checksum mismatch".into()));
                }
            }
            let text =
                std::str::from_utf8(&data).map_err(|_| FetchError::Malformed("gcp-sm: payload is not UTF-8".into()))?;
            let version = a.name.rsplit('/').next().unwrap_or_default().to_string();
            return Ok((crate::sources::clean(text)?, version));
        }
    }

    pub async fn fetch(&self, name: &str) -> Result<Fetched, FetchError> {
        let (secret, pinned) = match name.split_once("/versions/") {
            Some((s, v)) => (s, Some(v)),
            None => (name, None),
        };
        let (value, version) = self.access(secret, pinned.unwrap_or("latest")).await?;
        let previous = match (pinned, version.parse::<u64>()) {
            (None, Ok(n)) if n > 1 => match self.access(secret, &(n - 1).to_string()).await {
                Ok((v, _)) => Some(v),
                Err(e) => {
                    tracing::debug!(reason = e.class(), "gcp-sm: no previous version");
                    None
                }
            },
            _ => None,
        };
        Ok(Fetched { value, version: Some(version), previous })
    }
}

/// `access_token` and its lifetime from an OAuth token response.
pub(crate) fn token_of(resp: &Response, what: &'static str) -> Result<(SecretString, Duration), FetchError> {
    let v: serde_json::Value = resp.json(what)?;
    let t = v["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| FetchError::Malformed(format!("{what}: no access_token")))?;
    Ok((SecretString::from(t.to_string()), lifetime(&v["expires_in"])))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The DER of a PKCS#8 PEM private key.
fn pem_der(pem: &str) -> Result<Zeroizing<Vec<u8>>, FetchError> {
    let b64: Zeroizing<String> =
        Zeroizing::new(pem.lines().map(str::trim).filter(|l| !l.starts_with("-----") && !l.is_empty()).collect());
    STANDARD
        .decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| FetchError::NotConfigured("gcp-sm: private_key is not PEM".into()))
}

/// A JWT for the OAuth 2.0 JWT bearer grant, signed RS256 with the key.
pub(crate) fn signed_jwt(key: &ServiceAccountKey) -> Result<String, FetchError> {
    let der = pem_der(key.private_key.expose_secret())?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|_| FetchError::NotConfigured("gcp-sm: private_key is not a PKCS#8 RSA key".into()))?;
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &key.private_key_id {
        header["kid"] = kid.clone().into();
    }
    let iat = now_secs();
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": key.token_uri,
        "iat": iat,
        "exp": iat + 3600,
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut sig)
        .map_err(|_| FetchError::NotConfigured("gcp-sm: signing the token request failed".into()))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// CRC-32C (Castagnoli), as Secret Manager's `dataCrc32c`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32c_check_value() {
        assert_eq!(super::crc32c(b"123456789"), 0xE306_9283);
    }
}
