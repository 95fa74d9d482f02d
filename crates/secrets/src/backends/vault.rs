//! `vault://MOUNT/PATH#FIELD` — HashiCorp Vault KV version 2 over its HTTP API.
//!
//! Read: `GET {VAULT_ADDR}/v1/MOUNT/data/PATH` (and `?version=N-1` for the
//! previous value). Write: read, then `POST .../data/PATH` with the field
//! set and `options.cas` = the version read, so a concurrent writer is never
//! overwritten blindly. Auth: a token (`VAULT_TOKEN`, `VAULT_TOKEN_FILE` or
//! `~/.vault-token`) or AppRole (`VAULT_ROLE_ID` + `VAULT_SECRET_ID` or
//! `VAULT_SECRET_ID_FILE`, login at `auth/{VAULT_APPROLE_MOUNT:-approle}/login`).
//! `VAULT_NAMESPACE` is sent as `X-Vault-Namespace`.

use super::token::{lifetime, TokenCache};
use crate::http::{encode_path, Http, Response};
use crate::{FetchError, Fetched};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone)]
pub enum VaultAuth {
    Token(SecretString),
    /// Read on every use, so an agent that renews the file is followed.
    TokenFile(PathBuf),
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretString,
    },
}

#[derive(Clone)]
pub struct VaultConfig {
    /// Base address, e.g. `https://vault.example.com:8200`.
    pub addr: String,
    pub namespace: Option<String>,
    pub auth: VaultAuth,
    pub timeout: Duration,
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            VaultAuth::Token(_) => "token".to_string(),
            VaultAuth::TokenFile(p) => format!("token file {}", p.display()),
            VaultAuth::AppRole { mount, .. } => format!("approle at auth/{mount}"),
        };
        f.debug_struct("VaultConfig")
            .field("addr", &self.addr)
            .field("namespace", &self.namespace)
            .field("auth", &auth)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl VaultConfig {
    pub fn from_env() -> Result<Self, FetchError> {
        let addr = env("VAULT_ADDR").ok_or_else(|| FetchError::NotConfigured("vault: VAULT_ADDR is not set".into()))?;
        let auth = if let Some(role_id) = env("VAULT_ROLE_ID") {
            let secret_id = match (env("VAULT_SECRET_ID"), env("VAULT_SECRET_ID_FILE")) {
                (Some(s), _) => SecretString::from(s),
                (None, Some(p)) => {
                    let s = std::fs::read_to_string(&p)
                        .map_err(|_| FetchError::NotConfigured(format!("vault: cannot read {p}")))?;
                    SecretString::from(s.trim().to_string())
                }
                (None, None) => {
                    return Err(FetchError::NotConfigured(
                        "vault: VAULT_ROLE_ID needs VAULT_SECRET_ID or VAULT_SECRET_ID_FILE".into(),
                    ))
                }
            };
            VaultAuth::AppRole {
                mount: env("VAULT_APPROLE_MOUNT").unwrap_or_else(|| "approle".into()),
                role_id,
                secret_id,
            }
        } else if let Some(t) = env("VAULT_TOKEN") {
            VaultAuth::Token(SecretString::from(t))
        } else if let Some(p) = env("VAULT_TOKEN_FILE") {
            VaultAuth::TokenFile(p.into())
        } else if let Some(home) = env("HOME") {
            VaultAuth::TokenFile(PathBuf::from(home).join(".vault-token"))
        } else {
            return Err(FetchError::NotConfigured("vault: no VAULT_TOKEN, VAULT_TOKEN_FILE or VAULT_ROLE_ID".into()));
        };
        Ok(VaultConfig {
            addr: addr.trim_end_matches('/').to_string(),
            namespace: env("VAULT_NAMESPACE"),
            auth,
            timeout: Duration::from_secs(10),
        })
    }
}

pub(crate) struct Vault {
    cfg: VaultConfig,
    http: Http,
    token: TokenCache,
}

#[derive(Deserialize)]
struct KvRead {
    data: KvData,
}

#[derive(Deserialize)]
struct KvData {
    data: Option<Map<String, Value>>,
    metadata: KvMeta,
}

#[derive(Deserialize)]
struct KvMeta {
    version: u64,
}

#[derive(Deserialize)]
struct KvWritten {
    data: KvMeta,
}

/// A secret's fields; values are wiped when it is dropped.
struct Fields(Map<String, Value>);

impl Drop for Fields {
    fn drop(&mut self) {
        for v in self.0.values_mut() {
            if let Value::String(s) = v {
                zeroize::Zeroize::zeroize(s);
            }
        }
    }
}

impl Vault {
    pub fn new(cfg: VaultConfig) -> Self {
        let http = Http::new(cfg.timeout);
        Vault { cfg, http, token: TokenCache::new() }
    }

    async fn token(&self) -> Result<SecretString, FetchError> {
        match &self.cfg.auth {
            VaultAuth::Token(t) => Ok(t.clone()),
            VaultAuth::TokenFile(p) => match tokio::fs::read_to_string(p).await {
                Ok(t) if !t.trim().is_empty() => Ok(SecretString::from(t.trim().to_string())),
                _ => Err(FetchError::NotConfigured(format!("vault: no token in {}", p.display()))),
            },
            VaultAuth::AppRole { mount, role_id, secret_id } => {
                self.token.get(|| self.login(mount, role_id, secret_id)).await
            }
        }
    }

    async fn login(
        &self,
        mount: &str,
        role_id: &str,
        secret_id: &SecretString,
    ) -> Result<(SecretString, Duration), FetchError> {
        let body = zeroize::Zeroizing::new(
            serde_json::json!({"role_id": role_id, "secret_id": secret_id.expose_secret()}).to_string(),
        );
        let req = self.request(
            Method::POST,
            &format!("/v1/auth/{}/login", encode_path(mount)),
            None,
            Some(body.as_bytes().to_vec()),
        )?;
        let resp = self.http.send(req).await?;
        match resp.status {
            StatusCode::OK => {}
            // Vault answers a wrong role or secret id with 400
            StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                return Err(FetchError::Denied)
            }
            s => return Err(status_error(s)),
        }
        let v: Value = resp.json("vault login")?;
        let token = v["auth"]["client_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| FetchError::Malformed("vault login: no client_token".into()))?;
        Ok((SecretString::from(token.to_string()), lifetime(&v["auth"]["lease_duration"])))
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Full<Bytes>>, FetchError> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.cfg.addr, path))
            .header("x-vault-request", "true");
        if let Some(ns) = &self.cfg.namespace {
            b = b.header("x-vault-namespace", ns);
        }
        if let Some(t) = token {
            let mut v = http::HeaderValue::from_str(t.expose_secret())
                .map_err(|_| FetchError::NotConfigured("vault: the token is not a valid header".into()))?;
            v.set_sensitive(true);
            b = b.header("x-vault-token", v);
        }
        let body = match body {
            Some(bytes) => {
                b = b.header("content-type", "application/json");
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        b.body(body).map_err(|_| FetchError::NotConfigured("vault: VAULT_ADDR is not a valid URL".into()))
    }

    /// Send with the current token; with AppRole, log in again once if the
    /// token was refused (it may have expired early or been revoked).
    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Response, FetchError> {
        let token = self.token().await?;
        let resp = self.http.send(self.request(method.clone(), path, Some(&token), body.clone())?).await?;
        if resp.status == StatusCode::FORBIDDEN && matches!(self.cfg.auth, VaultAuth::AppRole { .. }) {
            self.token.clear().await;
            let token = self.token().await?;
            return self.http.send(self.request(method, path, Some(&token), body)?).await;
        }
        Ok(resp)
    }

    async fn read(&self, mount: &str, path: &str, version: Option<u64>) -> Result<(Fields, u64), FetchError> {
        let mut p = format!("/v1/{}/data/{}", encode_path(mount), encode_path(path));
        if let Some(v) = version {
            p.push_str(&format!("?version={v}"));
        }
        let resp = self.send(Method::GET, &p, None).await?;
        if resp.status != StatusCode::OK {
            return Err(status_error(resp.status));
        }
        let kv: KvRead = resp.json("vault kv read")?;
        match kv.data.data {
            // a deleted or destroyed version has metadata and no data
            None => Err(FetchError::NotFound),
            Some(d) => Ok((Fields(d), kv.data.metadata.version)),
        }
    }

    pub async fn fetch(&self, mount: &str, path: &str, field: &str) -> Result<Fetched, FetchError> {
        let (fields, version) = self.read(mount, path, None).await?;
        let value = field_value(&fields, field)?;
        let previous = if version > 1 {
            match self.read(mount, path, Some(version - 1)).await {
                Ok((old, _)) => field_value(&old, field).ok(),
                Err(e) => {
                    tracing::debug!(reason = e.class(), "vault: no previous version");
                    None
                }
            }
        } else {
            None
        };
        Ok(Fetched { value, version: Some(version.to_string()), previous })
    }

    pub async fn deliver(
        &self,
        mount: &str,
        path: &str,
        field: &str,
        value: &SecretString,
    ) -> Result<Option<String>, FetchError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut fields, cas) = match self.read(mount, path, None).await {
                Ok(found) => found,
                Err(FetchError::NotFound) => (Fields(Map::new()), 0),
                Err(e) => return Err(e),
            };
            fields.0.insert(field.to_string(), Value::String(value.expose_secret().to_string()));
            let body = serde_json::json!({"options": {"cas": cas}, "data": &fields.0});
            let body = zeroize::Zeroizing::new(body.to_string());
            let p = format!("/v1/{}/data/{}", encode_path(mount), encode_path(path));
            let resp = self.send(Method::POST, &p, Some(body.as_bytes().to_vec())).await?;
            match resp.status {
                StatusCode::OK => {
                    let w: KvWritten = resp.json("vault kv write")?;
                    return Ok(Some(w.data.version.to_string()));
                }
                // check-and-set lost against a concurrent writer: read again
                StatusCode::BAD_REQUEST if attempt < 3 => continue,
                StatusCode::BAD_REQUEST => {
                    return Err(FetchError::Unreachable("vault: the write kept losing check-and-set".into()))
                }
                s => return Err(status_error(s)),
            }
        }
    }
}

fn field_value(fields: &Fields, field: &str) -> Result<SecretString, FetchError> {
    match fields.0.get(field) {
        Some(Value::String(s)) => crate::sources::clean(s),
        Some(_) => Err(FetchError::Malformed(format!("vault: field {field:?} is not a string"))),
        None => Err(FetchError::NotFound),
    }
}

fn status_error(s: StatusCode) -> FetchError {
    match s.as_u16() {
        403 | 401 => FetchError::Denied,
        404 => FetchError::NotFound,
        503 => FetchError::Unreachable("vault is sealed or in standby (HTTP 503)".into()),
        n => FetchError::Unreachable(format!("vault answered HTTP {n}")),
    }
}
