//! The whole scanner on one buffer — archive sniffing, zip/tar/gzip parsing,
//! nesting, UTF-16 — never panics and never extracts past its byte budget
//! (a small budget keeps a decompression bomb from exhausting memory).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for f in keyward_scanner::scan_buffer("fuzz", data, 4, 1 << 20) {
        assert_eq!(f.fingerprint.len(), 64);
        assert!(f.line >= 1 && f.column >= 1);
    }
});
