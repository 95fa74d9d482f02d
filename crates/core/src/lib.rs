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
