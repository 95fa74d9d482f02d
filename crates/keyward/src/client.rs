//! A small JSON client for the admin API: management commands talk to the
//! server, which stays the single writer.

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

pub struct AdminClient {
    base: String,
    token: Option<SecretString>,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// An error answer from the admin API.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiFailure {}

impl AdminClient {
    pub fn new(base: &str, token: Option<SecretString>) -> Self {
        let https =
            hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: Client::builder(TokioExecutor::new()).build(https),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut req = Request::builder().method(method).uri(format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", t.expose_secret()));
        }
        let payload = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(b)?)
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload)).context("building the request")?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| anyhow!("cannot reach the keyward admin API at {}: {e}", self.base))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.context("reading the admin API's answer")?.to_bytes();
        let v: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        if !status.is_success() {
            let message = v["error"]["message"].as_str().unwrap_or("request failed").to_string();
            return Err(ApiFailure { status, message }.into());
        }
        Ok(v)
    }
}
