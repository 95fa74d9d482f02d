//! The detectors never panic, and every match lies inside the buffer, starts
//! with a known prefix and has the exact length of its kind.
#![no_main]

use keyward_detect::leak::{find_all, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for m in find_all(data) {
        assert!(m.start < m.end && m.end <= data.len());
        let s = &data[m.start..m.end];
        match m.kind {
            Kind::AnthropicApiKey => assert!(s.len() == 108 && s.starts_with(b"sk-ant-api03-")),
            Kind::AnthropicAdminKey => assert!(s.len() == 110 && s.starts_with(b"sk-ant-admin01-")),
            Kind::KeywardVirtualKey => assert!(s.starts_with(b"kw_")),
            Kind::KeywardAdminToken => assert!(s.starts_with(b"kwa_")),
        }
    }
});
