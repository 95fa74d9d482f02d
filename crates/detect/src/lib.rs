//! Pure, synchronous detectors. Nothing here does I/O: callers hand in bytes and
//! get back positions and kinds.
//!
//! * [`leak`] — leaked Anthropic keys and keyward's own keys, by exact shape and
//!   (for keyward keys) checksum.

pub mod leak;
pub mod shield;
