//! keyward's domain: key formats and digests, envelope encryption, usage and
//! cost math, the SSE usage reader and the typed configuration.
//!
//! Nothing in this crate does network or database I/O; the scanner, the
//! gateway and the store all share these definitions.

pub mod audit;
pub mod base62;
pub mod config;
pub mod crypto;
pub mod env;
pub mod ids;
pub mod keys;
pub mod policy;
pub mod prices;
pub mod sse;
pub mod usage;

pub use env::Environment;

/// A hash map with a fast hasher (foldhash, seeded per process) for the
/// request path's lookups by key digest, key id and label set. Those keys come
/// from the gateway itself (ids it made, HMAC digests a client cannot steer), so
/// the std map's SipHash, which guards maps whose keys an attacker chooses, buys
/// nothing there and costs a few hundred instructions per lookup.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
