//! keyward's own secrets: virtual keys `kw_(dev|stg|prod)_…` and admin tokens
//! `kwa_…`, recognised by prefix and confirmed by the CRC32 checksum that
//! [`keyward_core::keys::parse`] verifies, so random text never matches.

use super::{left_boundary, run_len, Kind};
use keyward_core::keys::{self, KeyKind, SECRET_LEN};

pub(super) const VIRTUAL_ANCHOR: &str = "kw_";
pub(super) const ADMIN_ANCHOR: &str = "kwa_";
const ENV_TAGS: [&[u8]; 3] = [b"dev_", b"stg_", b"prod_"];

/// Characters that may precede or extend a keyward key: `[A-Za-z0-9_]`.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

pub(super) fn verify_virtual(buf: &[u8], pos: usize) -> Option<(Kind, usize)> {
    let after = buf.get(pos + VIRTUAL_ANCHOR.len()..)?;
    let tag = ENV_TAGS.iter().find(|t| after.starts_with(t))?;
    verify(buf, pos, VIRTUAL_ANCHOR.len() + tag.len())
}

pub(super) fn verify_admin(buf: &[u8], pos: usize) -> Option<(Kind, usize)> {
    verify(buf, pos, ADMIN_ANCHOR.len())
}

fn verify(buf: &[u8], pos: usize, prefix_len: usize) -> Option<(Kind, usize)> {
    if !left_boundary(buf, pos, is_word) {
        return None;
    }
    let secret_start = pos + prefix_len;
    if run_len(buf, secret_start, SECRET_LEN + 1, is_base62) != SECRET_LEN {
        return None;
    }
    let end = secret_start + SECRET_LEN;
    let candidate = std::str::from_utf8(buf.get(pos..end)?).ok()?;
    match keys::parse(candidate).ok()? {
        KeyKind::Virtual(_) => Some((Kind::KeywardVirtualKey, end)),
        KeyKind::AdminToken => Some((Kind::KeywardAdminToken, end)),
    }
}
