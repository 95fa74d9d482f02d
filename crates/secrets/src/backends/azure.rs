//! `azure-kv://VAULT/SECRET` — Azure Key Vault over its REST API:
//! `GET https://VAULT.vault.azure.net/secrets/SECRET?api-version=7.4`, with a
//! bearer token for the resource `https://vault.azure.net`.
//!
//! Auth: client credentials (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_CLIENT_SECRET`; `POST {AZURE_AUTHORITY_HOST}/TENANT/oauth2/v2.0/token`),
//! else managed identity (App Service's `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`,
//! else the instance metadata service; `AZURE_CLIENT_ID` picks a user-assigned
//! identity). Overrides for sovereign clouds and tests:
//! `KEYWARD_AZURE_KEYVAULT_SUFFIX` (default `vault.azure.net`),
//! `KEYWARD_AZURE_KEYVAULT_URL` (send to this base URL, with `Host:
//! VAULT.SUFFIX`), `KEYWARD_AZURE_IMDS_URL` (default `http://169.254.169.254`).

use super::token::TokenCache;
use crate::backends::gcp::token_of;
use crate::http::{encode, form, Http};
use crate::{FetchError, Fetched};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;
use zeroize::Zeroizing;

pub const API_VERSION: &str = "7.4";
pub const RESOURCE: &str = "https://vault.azure.net";
pub const SCOPE: &str = "https://vault.azure.net/.default";

#[derive(Clone)]
pub enum AzureAuth {
    ClientSecret {
        tenant_id: String,
        client_id: String,
        client_secret: SecretString,
    },
    ManagedIdentity {
        /// A user-assigned identity; the system-assigned one when `None`.
        client_id: Option<String>,
        /// App Service / Container Apps: `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`.
        app_service: Option<(String, SecretString)>,
        /// Base URL of the instance metadata service.
        imds: String,
    },
}

#[derive(Clone)]
pub struct AzureConfig {
    pub authority: String,
    pub vault_suffix: String,
    /// Send Key Vault requests to this base URL instead of
    /// `https://VAULT.SUFFIX` (the `Host` header still names the vault).
    pub endpoint: Option<String>,
    pub auth: AzureAuth,
    pub timeout: Duration,
}

impl std::fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            AzureAuth::ClientSecret { tenant_id, client_id, .. } => {
                format!("client credentials {client_id} in {tenant_id}")
            }
            AzureAuth::ManagedIdentity { client_id, .. } => {
                format!("managed identity {}", client_id.as_deref().unwrap_or("(system)"))
            }
        };
        f.debug_struct("AzureConfig")
            .field("authority", &self.authority)
            .field("vault_suffix", &self.vault_suffix)
            .field("endpoint", &self.endpoint)
            .field("auth", &auth)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl AzureConfig {
    pub fn from_env() -> Result<Self, FetchError> {
        let auth = match (env("AZURE_TENANT_ID"), env("AZURE_CLIENT_ID"), env("AZURE_CLIENT_SECRET")) {
            (Some(tenant_id), Some(client_id), Some(secret)) => {
                AzureAuth::ClientSecret { tenant_id, client_id, client_secret: SecretString::from(secret) }
            }
            (_, client_id, _) => AzureAuth::ManagedIdentity {
                client_id,
                app_service: env("IDENTITY_ENDPOINT").zip(env("IDENTITY_HEADER").map(SecretString::from)),
                imds: env("KEYWARD_AZURE_IMDS_URL").unwrap_or_else(|| "http://169.254.169.254".into()),
            },
        };
        Ok(AzureConfig {
            authority: env("AZURE_AUTHORITY_HOST")
                .unwrap_or_else(|| "https://login.microsoftonline.com".into())
                .trim_end_matches('/')
                .to_string(),
            vault_suffix: env("KEYWARD_AZURE_KEYVAULT_SUFFIX").unwrap_or_else(|| "vault.azure.net".into()),
            endpoint: env("KEYWARD_AZURE_KEYVAULT_URL").map(|u| u.trim_end_matches('/').to_string()),
            auth,
            timeout: Duration::from_secs(10),
        })
    }
}

pub(crate) struct Azure {
    cfg: AzureConfig,
    http: Http,
    token: TokenCache,
}

#[derive(Deserialize)]
struct Bundle {
    value: Option<String>,
    id: String,
}

fn valid_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Azure {
    pub fn new(cfg: AzureConfig) -> Self {
        let http = Http::new(cfg.timeout);
        Azure { cfg, http, token: TokenCache::new() }
    }

    async fn obtain_token(&self) -> Result<(SecretString, Duration), FetchError> {
        let bad_url = |_| FetchError::NotConfigured("azure-kv: an identity endpoint is not a valid URL".into());
        let req = match &self.cfg.auth {
            AzureAuth::ClientSecret { tenant_id, client_id, client_secret } => {
                let body = Zeroizing::new(form(&[
                    ("client_id", client_id),
                    ("client_secret", client_secret.expose_secret()),
                    ("scope", SCOPE),
                    ("grant_type", "client_credentials"),
                ]));
                Request::builder()
                    .method(Method::POST)
                    .uri(format!("{}/{}/oauth2/v2.0/token", self.cfg.authority, encode(tenant_id)))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(Bytes::from(body.as_bytes().to_vec())))
                    .map_err(bad_url)?
            }
            AzureAuth::ManagedIdentity { client_id, app_service, imds } => {
                let id = client_id.as_deref().map(|c| format!("&client_id={}", encode(c))).unwrap_or_default();
                match app_service {
                    Some((endpoint, header)) => {
                        let mut h = http::HeaderValue::from_str(header.expose_secret()).map_err(|_| {
                            FetchError::NotConfigured("azure-kv: IDENTITY_HEADER is not a valid header".into())
                        })?;
                        h.set_sensitive(true);
                        Request::builder()
                            .uri(format!("{endpoint}?api-version=2019-08-01&resource={}{id}", encode(RESOURCE)))
                            .header("x-identity-header", h)
                            .body(Full::new(Bytes::new()))
                            .map_err(bad_url)?
                    }
                    None => Request::builder()
                        .uri(format!(
                            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}{id}",
                            imds.trim_end_matches('/'),
                            encode(RESOURCE)
                        ))
                        .header("metadata", "true")
                        .body(Full::new(Bytes::new()))
                        .map_err(bad_url)?,
                }
            }
        };
        let resp = self.http.send(req).await?;
        match resp.status.as_u16() {
            200 => token_of(&resp, "azure-kv token"),
            // AAD: invalid_client is 401, an unknown tenant or bad request 400
            400 | 401 | 403 => Err(FetchError::Denied),
            s => Err(FetchError::Unreachable(format!("azure-kv: token endpoint answered HTTP {s}"))),
        }
    }

    pub async fn fetch(&self, vault: &str, secret: &str) -> Result<Fetched, FetchError> {
        if !valid_name(vault, 24) || !valid_name(secret, 127) {
            return Err(FetchError::Malformed("azure-kv: vault and secret names use letters, digits and '-'".into()));
        }
        let host = format!("{vault}.{}", self.cfg.vault_suffix);
        let base = self.cfg.endpoint.clone().unwrap_or_else(|| format!("https://{host}"));
        let uri = format!("{base}/secrets/{secret}?api-version={API_VERSION}");
        let mut retried = false;
        loop {
            let token = self.token.get(|| self.obtain_token()).await?;
            let mut auth = http::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| FetchError::Malformed("azure-kv: access token is not a valid header".into()))?;
            auth.set_sensitive(true);
            let req = Request::builder()
                .uri(&uri)
                .header("host", &host)
                .header("authorization", auth)
                .header("accept", "application/json")
                .body(Full::new(Bytes::new()))
                .map_err(|_| FetchError::NotConfigured("azure-kv: the vault URL is not valid".into()))?;
            let resp = self.http.send(req).await?;
            match resp.status {
                StatusCode::OK => {}
                StatusCode::UNAUTHORIZED if !retried => {
                    self.token.clear().await;
                    retried = true;
                    continue;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(FetchError::Denied),
                StatusCode::NOT_FOUND => return Err(FetchError::NotFound),
                s => return Err(FetchError::Unreachable(format!("azure-kv answered HTTP {}", s.as_u16()))),
            }
            let mut b: Bundle = resp.json("azure-kv get secret")?;
            let value = b
                .value
                .take()
                .map(Zeroizing::new)
                .ok_or_else(|| FetchError::Malformed("azure-kv: the secret has no value".into()))?;
            let version = b.id.rsplit('/').next().unwrap_or_default().to_string();
            return Ok(Fetched {
                value: crate::sources::clean(&value)?,
                version: (!version.is_empty()).then_some(version),
                previous: None,
            });
        }
    }
}
