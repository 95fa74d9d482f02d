//! Protocol-faithful fakes of the secret managers that have no emulator that
//! installs here: HashiCorp Vault (KV v2, token and AppRole auth, namespaces),
//! Google Secret Manager (OAuth JWT-bearer token endpoint, metadata server,
//! `versions/V:access`) and Azure Key Vault (AAD client-credentials token
//! endpoint, managed-identity IMDS, get secret).
//!
//! Each fake checks the exact requests its real counterpart would check —
//! paths, methods, headers, auth flow, version fields — and answers with the
//! documented response shapes and error statuses, so the backends in
//! `keyward-secrets` are tested against the protocol, not against themselves.
//! Each listens on `127.0.0.1:0` and stops when dropped.

pub mod azure;
pub mod gcp;
pub mod moto;
pub mod vault;

use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// One request as a fake saw it. Credentials are recorded as present, never
/// by value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names (lowercase) and values; `authorization`, `x-vault-token`
    /// and `x-identity-header` values are replaced by `<present>`.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn of(method: &http::Method, uri: &http::Uri, headers: &http::HeaderMap) -> Self {
        const SECRET: [&str; 3] = ["authorization", "x-vault-token", "x-identity-header"];
        Recorded {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    let n = n.as_str().to_string();
                    let v = if SECRET.contains(&n.as_str()) {
                        "<present>".to_string()
                    } else {
                        v.to_str().unwrap_or("<binary>").to_string()
                    };
                    (n, v)
                })
                .collect(),
        }
    }
}

/// A fake's listener; the server task stops when this is dropped.
pub(crate) struct Running {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub(crate) async fn start(app: Router) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Running { addr, task })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Decode an `application/x-www-form-urlencoded` body or query string.
pub fn parse_form(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) type Shared<T> = Arc<Mutex<T>>;

#[cfg(test)]
mod tests {
    #[test]
    fn form_decoding() {
        let f = super::parse_form("a=x%20y&b=c+d&scope=https%3A%2F%2Fvault.azure.net%2F.default&e");
        assert_eq!(f["a"], "x y");
        assert_eq!(f["b"], "c d");
        assert_eq!(f["scope"], "https://vault.azure.net/.default");
        assert_eq!(f["e"], "");
    }
}
