//! Secret references, the sources behind them, and the cache the request path
//! reads through.
//!
//! A reference ([`SecretRef`]) names where a secret lives; the value is fetched
//! when needed and kept for a short TTL, so that a value rotated at the source
//! is in use everywhere within one TTL, and a source outage is bridged by the
//! last good value for a bounded stale window, then fails closed.

mod cache;
mod reference;
mod sources;

pub use cache::{CacheEntry, CacheError, Credential, SecretCache};
pub use reference::{RefError, SecretRef};
pub use sources::{DefaultSources, FetchError, SecretSource};
