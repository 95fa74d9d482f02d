//! A cached bearer token (Vault AppRole, GCP and Azure access tokens): used
//! until shortly before it expires, then obtained again by one caller.

use crate::FetchError;
use secrecy::SecretString;
use std::future::Future;
use std::time::{Duration, Instant};

pub(crate) struct TokenCache {
    slot: tokio::sync::Mutex<Option<(SecretString, Instant)>>,
}

impl TokenCache {
    pub fn new() -> Self {
        TokenCache { slot: tokio::sync::Mutex::new(None) }
    }

    /// The cached token, or a new one from `obtain` (which returns the token
    /// and its lifetime). A token is renewed when less than a fifth of its
    /// lifetime, at most a minute, is left.
    pub async fn get<F, Fut>(&self, obtain: F) -> Result<SecretString, FetchError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Duration), FetchError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((t, renew_at)) = slot.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(t.clone());
            }
        }
        let (token, lifetime) = obtain().await?;
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        *slot = Some((token.clone(), Instant::now() + lifetime.saturating_sub(margin)));
        Ok(token)
    }

    /// Forget the token (the server refused it).
    pub async fn clear(&self) {
        *self.slot.lock().await = None;
    }
}

/// `expires_in` as a number or a string of digits (Azure IMDS sends strings).
pub(crate) fn lifetime(v: &serde_json::Value) -> Duration {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    Duration::from_secs(secs.unwrap_or(300))
}
