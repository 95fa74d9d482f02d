//! The SSE usage reader never panics and never buffers past its limit, however
//! the input is split into chunks.
#![no_main]

use keyward_core::sse::{SseUsageReader, MAX_EVENT_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split_seed, rest)) = data.split_first() else { return };
    let mut r = SseUsageReader::new();
    let step = (split_seed as usize % 64) + 1;
    for chunk in rest.chunks(step) {
        r.feed(chunk);
    }
    r.finish();
    let _ = MAX_EVENT_BYTES;
});
