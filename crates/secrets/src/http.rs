//! The one HTTP client of the Vault, GCP and Azure backends: hyper-util's
//! pooled client over hyper-rustls (ring provider, webpki roots).
//!
//! Errors are reduced to a class and a status code here: a response body is
//! never put into an error, because a misbehaving server may echo a secret.

use crate::FetchError;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Largest response body read from a secret manager.
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
pub(crate) struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

pub(crate) struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Response {
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &'static str) -> Result<T, FetchError> {
        serde_json::from_slice(&self.body)
            .map_err(|_| FetchError::Malformed(format!("{what}: unexpected response body")))
    }
}

impl Http {
    pub fn new(timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Http {
            client: Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(https),
            timeout,
        }
    }

    /// Send `req` and read the whole (bounded) response, within the timeout.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response, FetchError> {
        let host = req.uri().host().unwrap_or("").to_string();
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|_| FetchError::Unreachable(format!("cannot connect to {host}")))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|_| FetchError::Unreachable(format!("{host}: response body failed")))?
                .to_bytes();
            Ok(Response { status: parts.status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FetchError::Unreachable(format!("{host}: no answer within {}s", self.timeout.as_secs())))?
    }
}

/// Percent-encode one path segment or form value (RFC 3986 unreserved kept).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encode a path of `/`-separated segments, each percent-encoded.
pub(crate) fn encode_path(p: &str) -> String {
    p.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// `application/x-www-form-urlencoded` body.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(encode("a b/c+d"), "a%20b%2Fc%2Bd");
        assert_eq!(encode_path("team a/claude"), "team%20a/claude");
        assert_eq!(form(&[("grant_type", "x y"), ("s", "a&b")]), "grant_type=x%20y&s=a%26b");
    }
}
