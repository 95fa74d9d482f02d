//! Anthropic API keys (`sk-ant-api03-` + 93 + `AA`) and Admin API keys
//! (`sk-ant-admin01-` + 93 + `AA`).

use super::{left_boundary, run_len, Kind};

pub(super) const ANCHOR: &str = "sk-ant-";
const API_PREFIX: &[u8] = b"sk-ant-api03-";
const ADMIN_PREFIX: &[u8] = b"sk-ant-admin01-";
/// Characters after the prefix: 93 free ones and the `AA` ending.
const BODY_LEN: usize = 95;
pub(super) const ADMIN_LEN: usize = 15 + BODY_LEN;

/// `[A-Za-z0-9_-]`
pub(super) fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Verify an anchor at `pos`; on success the kind and the end of the secret.
pub(super) fn verify(buf: &[u8], pos: usize) -> Option<(Kind, usize)> {
    let rest = buf.get(pos..)?;
    let (kind, prefix_len) = if rest.starts_with(API_PREFIX) {
        (Kind::AnthropicApiKey, API_PREFIX.len())
    } else if rest.starts_with(ADMIN_PREFIX) {
        (Kind::AnthropicAdminKey, ADMIN_PREFIX.len())
    } else {
        return None;
    };
    if !left_boundary(buf, pos, is_key_char) {
        return None;
    }
    let body_start = pos + prefix_len;
    // a run of exactly 95 key characters: one more and it is not a key
    if run_len(buf, body_start, BODY_LEN + 1, is_key_char) != BODY_LEN {
        return None;
    }
    let body = buf.get(body_start..body_start + BODY_LEN)?;
    if !body.ends_with(b"AA") || is_placeholder(&body[..BODY_LEN - 2]) {
        return None;
    }
    Some((kind, body_start + BODY_LEN))
}

/// Words that mark documentation and templates rather than a key.
const PLACEHOLDER_WORDS: [&[u8]; 9] =
    [b"example", b"placeholder", b"redacted", b"your-key", b"your_key", b"yourkey", b"replace", b"dummy", b"xxxxx"];

/// Whether the 93 free characters look like a template rather than CSPRNG output.
///
/// Real keys are 93 characters drawn from a 64-symbol alphabet: about 49
/// distinct symbols, no run of 6 equal characters and about 1.5 ascending steps
/// are expected; the thresholds below are many standard deviations away, so
/// the test has no practical false negatives on real keys.
fn is_placeholder(free: &[u8]) -> bool {
    let mut seen = [false; 256];
    let mut distinct = 0;
    let mut longest_run = 0;
    let mut run = 0;
    let mut ascending = 0;
    let mut prev = None;
    for &b in free {
        if !seen[usize::from(b)] {
            seen[usize::from(b)] = true;
            distinct += 1;
        }
        match prev {
            Some(p) if p == b => run += 1,
            _ => run = 1,
        }
        if prev.map(|p: u8| p.wrapping_add(1)) == Some(b) {
            ascending += 1;
        }
        longest_run = longest_run.max(run);
        prev = Some(b);
    }
    if distinct < 20 || longest_run >= 6 || ascending >= 20 {
        return true;
    }
    let lower: Vec<u8> = free.to_ascii_lowercase();
    PLACEHOLDER_WORDS.iter().any(|w| lower.windows(w.len()).any(|win| win == *w))
}
