//! Leaked-key detection: Anthropic API and admin keys, keyward virtual keys and
//! admin tokens.
//!
//! How a buffer is searched:
//! 1. one multi-pattern prefilter pass (aho-corasick, SIMD "Teddy" for a pattern
//!    set this small) finds the literal anchors `sk-ant-`, `kw_` and `kwa_`;
//! 2. each anchor is verified in place by hand-written code: exact length of the
//!    run of key characters, the `AA` ending, both boundaries, placeholders
//!    ([`anthropic`]), or the base62 CRC32 checksum for keyward keys ([`keyward`]).
//!
//! Nothing here allocates per byte or looks at a byte twice except around an
//! anchor, so the cost is that of the prefilter: a few GB/s.
//!
//! Boundaries. A key is a maximal run of key characters: a longer run is not a
//! key, and any other neighbour ends one — quotes, `&`, `}`, `=`, backticks,
//! whitespace, NUL and other binary bytes, start and end of the buffer. On the
//! left, an escape sequence that ends in a letter (`\n`, `\r`, `\t`, `\u0022`,
//! `%3D`) also counts as a boundary, since it stands for a non-key character in
//! the text it encodes.

mod anthropic;
mod keyward;
pub mod synth;

use aho_corasick::{AhoCorasick, Input, MatchKind};
use std::sync::LazyLock;

/// Longest secret any detector reports (an Anthropic admin key).
pub const MAX_SECRET_LEN: usize = anthropic::ADMIN_LEN;

/// Bytes of context a detector may look at on either side of a secret. A
/// streaming caller that splits a buffer into chunks must overlap them by at
/// least `MAX_SECRET_LEN + MAX_CONTEXT` bytes.
pub const MAX_CONTEXT: usize = 8;

/// What kind of secret was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `sk-ant-api03-…AA`, 108 characters.
    AnthropicApiKey,
    /// `sk-ant-admin01-…AA`, 110 characters.
    AnthropicAdminKey,
    /// `kw_(dev|stg|prod)_…`, checksum verified.
    KeywardVirtualKey,
    /// `kwa_…`, checksum verified.
    KeywardAdminToken,
}

impl Kind {
    pub const ALL: [Kind; 4] =
        [Kind::AnthropicApiKey, Kind::AnthropicAdminKey, Kind::KeywardVirtualKey, Kind::KeywardAdminToken];

    /// Stable identifier used in JSON output, SARIF rule ids and baselines.
    pub fn id(self) -> &'static str {
        match self {
            Kind::AnthropicApiKey => "anthropic-api-key",
            Kind::AnthropicAdminKey => "anthropic-admin-key",
            Kind::KeywardVirtualKey => "keyward-virtual-key",
            Kind::KeywardAdminToken => "keyward-admin-token",
        }
    }

    /// A human name.
    pub fn title(self) -> &'static str {
        match self {
            Kind::AnthropicApiKey => "Anthropic API key",
            Kind::AnthropicAdminKey => "Anthropic Admin API key",
            Kind::KeywardVirtualKey => "keyward virtual key",
            Kind::KeywardAdminToken => "keyward admin token",
        }
    }

    /// What to do about it, in one sentence.
    pub fn remedy(self) -> &'static str {
        match self {
            Kind::AnthropicApiKey | Kind::AnthropicAdminKey => {
                "Revoke the key in the Anthropic Console (or `keyward upstream rotate`) first, then remove it from the source and its history."
            }
            Kind::KeywardVirtualKey => {
                "Revoke or rotate the key with `keyward key rotate`, then remove it from the source and its history."
            }
            Kind::KeywardAdminToken => {
                "Revoke the admin token at once, then remove it from the source and its history."
            }
        }
    }

    /// Whether the kind is an upstream (Anthropic) credential.
    pub fn is_upstream(self) -> bool {
        matches!(self, Kind::AnthropicApiKey | Kind::AnthropicAdminKey)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// One secret located in a buffer: `buf[start..end]` is the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakMatch {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl LeakMatch {
    /// The secret's bytes in the buffer the match came from.
    pub fn secret<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start..self.end).unwrap_or_default()
    }
}

const ANCHORS: [&str; 3] = [anthropic::ANCHOR, keyward::VIRTUAL_ANCHOR, keyward::ADMIN_ANCHOR];

static PREFILTER: LazyLock<AhoCorasick> = LazyLock::new(|| {
    #[expect(clippy::expect_used, reason = "three constant, valid, short literals cannot fail to build")]
    AhoCorasick::builder().match_kind(MatchKind::LeftmostFirst).build(ANCHORS).expect("constant anchors build")
});

/// Call `on_match` for every secret in `buf`, in order of position.
pub fn scan(buf: &[u8], mut on_match: impl FnMut(LeakMatch)) {
    let ac = &*PREFILTER;
    let mut at = 0;
    while at < buf.len() {
        let Some(m) = ac.find(Input::new(buf).range(at..)) else {
            break;
        };
        let pos = m.start();
        let verified = match m.pattern().as_usize() {
            0 => anthropic::verify(buf, pos),
            1 => keyward::verify_virtual(buf, pos),
            _ => keyward::verify_admin(buf, pos),
        };
        match verified {
            Some((kind, end)) => {
                on_match(LeakMatch { kind, start: pos, end });
                at = end;
            }
            None => at = pos + 1,
        }
    }
}

/// Every secret in `buf`.
pub fn find_all(buf: &[u8]) -> Vec<LeakMatch> {
    let mut out = Vec::new();
    scan(buf, |m| out.push(m));
    out
}

/// SHA-256 hex of a secret: the `fingerprint` shared with the inventory, the
/// baseline file and the JSON/SARIF output.
pub fn fingerprint(secret: &[u8]) -> String {
    keyward_core::crypto::sha256_hex(&String::from_utf8_lossy(secret))
}

/// Whether `buf[pos]` starts a secret on its left side: it is at the start of
/// the buffer, or the byte before is not a key character, or what precedes is
/// an escape sequence standing for a non-key character.
fn left_boundary(buf: &[u8], pos: usize, is_key_char: fn(u8) -> bool) -> bool {
    let Some(&prev) = pos.checked_sub(1).and_then(|p| buf.get(p)) else {
        return true;
    };
    if !is_key_char(prev) {
        return true;
    }
    let before = &buf[..pos];
    // `\n`, `\r`, `\t` as written in source code, JSON and logs
    if let [.., b'\\', b'n' | b'r' | b't'] = before {
        return true;
    }
    // `\u0022` and friends (JSON, JavaScript)
    if let [.., b'\\', b'u', a, b, c, d] = before {
        if [a, b, c, d].iter().all(|x| x.is_ascii_hexdigit()) {
            return true;
        }
    }
    // `%3D`, `%22` (URL-encoded query strings and form bodies)
    if let [.., b'%', a, b] = before {
        if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() {
            return true;
        }
    }
    false
}

/// Length of the run of bytes satisfying `pred` starting at `from`, counting at
/// most `cap` bytes (so the caller can tell "exactly n" from "more than n").
fn run_len(buf: &[u8], from: usize, cap: usize, pred: fn(u8) -> bool) -> usize {
    buf.get(from..).unwrap_or_default().iter().take(cap).take_while(|&&b| pred(b)).count()
}

#[cfg(test)]
mod tests;
