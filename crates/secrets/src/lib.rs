//! Secret references, the sources behind them, and the cache the request path
//! reads through.
//!
//! A reference ([`SecretRef`]) names where a secret lives; the value is fetched
//! when needed and kept for a short TTL, so that a value rotated at the source
//! is in use everywhere within one TTL, and a source outage is bridged by the
//! last good value for a bounded stale window, then fails closed.
//!
//! Backends: `local:`, `env:`, `file:`, `exec:` (in [`DefaultSources`]),
//! `aws-sm://` (the AWS SDK), `vault://`, `gcp-sm://`, `azure-kv://` (their
//! HTTP APIs over one hyper + rustls client). Delivery targets
//! ([`SecretSink`]): `file:`, `exec:`, `aws-sm://`, `vault://`.

mod backends;
mod cache;
mod http;
mod reference;
mod sources;

pub use backends::aws::aws_client;
pub use backends::azure::{AzureAuth, AzureConfig};
pub use backends::gcp::{GcpAuth, GcpConfig, ServiceAccountKey};
pub use backends::vault::{VaultAuth, VaultConfig};
pub use cache::{CacheEntry, CacheError, CacheStats, Credential, SecretCache, DEFAULT_GRACE};
pub use reference::{RefError, SecretRef};
pub use sources::{DefaultSources, FetchError, Fetched, SecretSink, SecretSource, DEFAULT_EXEC_TIMEOUT};
