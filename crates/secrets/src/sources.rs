//! The backends that fetch a secret's current value.

use crate::SecretRef;
use async_trait::async_trait;
use keyward_core::crypto::{Envelope, Sealed};
use keyward_store::{Store, StoreError};
use secrecy::SecretString;
use std::sync::Arc;

/// Why a fetch failed, by class. Never carries the value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FetchError {
    #[error("not found")]
    NotFound,
    #[error("access denied")]
    Denied,
    #[error("source unreachable: {0}")]
    Unreachable(String),
    #[error("malformed value: {0}")]
    Malformed(String),
    #[error("the {0} backend is not available in this build")]
    Unsupported(&'static str),
}

#[async_trait]
pub trait SecretSource: Send + Sync + 'static {
    async fn fetch(&self, r: &SecretRef) -> Result<SecretString, FetchError>;
}

/// The backends keyward ships: `local:` (sealed in the store), `env:`, `file:`.
pub struct DefaultSources {
    store: Arc<dyn Store>,
    envelope: Arc<Envelope>,
}

impl DefaultSources {
    pub fn new(store: Arc<dyn Store>, envelope: Arc<Envelope>) -> Self {
        DefaultSources { store, envelope }
    }
}

fn clean(value: String) -> Result<SecretString, FetchError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FetchError::Malformed("empty value".into()));
    }
    if v.bytes().any(|b| b.is_ascii_control()) {
        return Err(FetchError::Malformed("control characters in value".into()));
    }
    Ok(SecretString::from(v.to_string()))
}

#[async_trait]
impl SecretSource for DefaultSources {
    async fn fetch(&self, r: &SecretRef) -> Result<SecretString, FetchError> {
        match r {
            SecretRef::Local(name) => {
                let row = self
                    .store
                    .get_local_secret(name)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound(_) => FetchError::NotFound,
                        other => FetchError::Unreachable(other.to_string()),
                    })?;
                let sealed = Sealed {
                    wrapped_key: row.wrapped_key,
                    ciphertext: row.ciphertext,
                };
                self.envelope
                    .open(&sealed, &format!("local:{name}"))
                    .map_err(|e| FetchError::Malformed(e.to_string()))
            }
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) => clean(v),
                Err(std::env::VarError::NotPresent) => Err(FetchError::NotFound),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(FetchError::Malformed("not UTF-8".into()))
                }
            },
            SecretRef::File(path) => match tokio::fs::read_to_string(path).await {
                Ok(v) => clean(v),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FetchError::NotFound),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    Err(FetchError::Denied)
                }
                Err(e) => Err(FetchError::Unreachable(e.kind().to_string())),
            },
            other => Err(FetchError::Unsupported(other.scheme())),
        }
    }
}
