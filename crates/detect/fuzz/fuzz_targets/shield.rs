//! The prompt-injection shield never panics: normalisation, payload decoding,
//! windowing and scoring of arbitrary (lossily decoded) bytes, and screened-part
//! extraction from arbitrary JSON. Scores stay finite and within 0..=1.
#![no_main]

use keyward_detect::shield::{normalize, screened_parts, Shield};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static SHIELD: LazyLock<Option<Shield>> = LazyLock::new(|| Shield::builtin().ok());

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let n = normalize(&text);
    assert!(n.payloads.len() <= 8);
    if let Some(shield) = SHIELD.as_ref() {
        let s = shield.score(&text);
        assert!(s.score.is_finite() && (0.0..=1.0).contains(&s.score));
        assert!(s.windows >= 1);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        for p in screened_parts(&v) {
            assert!(!p.text.trim().is_empty());
        }
    }
});
