//! keyward's own secret formats.
//!
//! * virtual key: `kw_<env>_<secret>`
//! * admin token: `kwa_<secret>`
//!
//! `<secret>` is [`RANDOM_LEN`] base62 characters of CSPRNG output followed by a
//! [`CHECKSUM_LEN`]-character base62 CRC32 of everything before it (prefix
//! included). A scanner can therefore recognise a keyward key offline and reject
//! look-alikes without any false positive from random text (1 in 2^32).

use crate::base62;
use crate::env::Environment;
use secrecy::{ExposeSecret, SecretString};

pub const RANDOM_LEN: usize = 40;
pub const CHECKSUM_LEN: usize = 6;
pub const SECRET_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
pub const VIRTUAL_PREFIX: &str = "kw_";
pub const ADMIN_PREFIX: &str = "kwa_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Virtual(Environment),
    AdminToken,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFormatError {
    #[error("not a keyward key (unknown prefix)")]
    Prefix,
    #[error("unknown environment tag")]
    Environment,
    #[error("wrong length")]
    Length,
    #[error("invalid character")]
    Charset,
    #[error("checksum mismatch")]
    Checksum,
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    base62::encode_u32_fixed6(crc32fast::hash(body))
}

fn mint(prefix: &str) -> SecretString {
    let mut s = String::with_capacity(prefix.len() + SECRET_LEN);
    s.push_str(prefix);
    s.push_str(&base62::random(RANDOM_LEN));
    let sum = checksum(s.as_bytes());
    // checksum bytes are ASCII alphanumerics by construction
    s.extend(sum.iter().map(|&b| b as char));
    SecretString::from(s)
}

/// A fresh virtual key for `env`.
pub fn generate_virtual(env: Environment) -> SecretString {
    mint(&format!("{VIRTUAL_PREFIX}{}_", env.as_str()))
}

/// A fresh admin token.
pub fn generate_admin_token() -> SecretString {
    mint(ADMIN_PREFIX)
}

/// Validate the shape and checksum of a candidate keyward key.
pub fn parse(candidate: &str) -> Result<KeyKind, KeyFormatError> {
    let (kind, secret) = if let Some(rest) = candidate.strip_prefix(ADMIN_PREFIX) {
        (KeyKind::AdminToken, rest)
    } else if let Some(rest) = candidate.strip_prefix(VIRTUAL_PREFIX) {
        let (env, secret) = rest.split_once('_').ok_or(KeyFormatError::Environment)?;
        let env = match env {
            "dev" => Environment::Dev,
            "stg" => Environment::Stg,
            "prod" => Environment::Prod,
            _ => return Err(KeyFormatError::Environment),
        };
        (KeyKind::Virtual(env), secret)
    } else {
        return Err(KeyFormatError::Prefix);
    };
    if secret.len() != SECRET_LEN {
        return Err(KeyFormatError::Length);
    }
    if !secret.bytes().all(base62::is_base62) {
        return Err(KeyFormatError::Charset);
    }
    let split = candidate.len() - CHECKSUM_LEN;
    if checksum(&candidate.as_bytes()[..split]) != candidate.as_bytes()[split..] {
        return Err(KeyFormatError::Checksum);
    }
    Ok(kind)
}

/// Redacted preview for humans: first 12 and last 4 characters.
pub fn redact(secret: &str) -> String {
    let n = secret.chars().count();
    if n <= 16 {
        return "*".repeat(n.min(8));
    }
    let head: String = secret.chars().take(12).collect();
    let tail: String = secret.chars().skip(n - 4).collect();
    format!("{head}…{tail}")
}

/// Convenience for tests and the CLI: the environment of a virtual key.
pub fn virtual_env(key: &SecretString) -> Option<Environment> {
    match parse(key.expose_secret()) {
        Ok(KeyKind::Virtual(env)) => Some(env),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_parse() {
        for env in Environment::ALL {
            let k = generate_virtual(env);
            assert_eq!(parse(k.expose_secret()), Ok(KeyKind::Virtual(env)));
            assert!(k.expose_secret().starts_with(&format!("kw_{env}_")));
        }
        let t = generate_admin_token();
        assert_eq!(parse(t.expose_secret()), Ok(KeyKind::AdminToken));
    }

    #[test]
    fn rejects_lookalikes() {
        let k = generate_virtual(Environment::Prod);
        let s = k.expose_secret();
        assert_eq!(parse(&s[..s.len() - 1]), Err(KeyFormatError::Length));
        assert_eq!(parse(&format!("{s}x")), Err(KeyFormatError::Length));
        assert_eq!(parse(&s.replace("kw_prod_", "kw_production_")), Err(KeyFormatError::Environment));
        assert_eq!(parse(&s.replace("kw_prod_", "kw_qa_")), Err(KeyFormatError::Environment));
        assert_eq!(parse("sk-ant-api03-xyz"), Err(KeyFormatError::Prefix));
        let placeholder = format!("kw_prod_{}", "x".repeat(SECRET_LEN));
        assert_eq!(parse(&placeholder), Err(KeyFormatError::Checksum));
    }

    #[test]
    fn redaction_hides_the_middle() {
        let k = generate_virtual(Environment::Dev);
        let r = redact(k.expose_secret());
        assert!(r.starts_with(&k.expose_secret()[..12]));
        assert!(r.chars().count() < 20);
    }

    proptest! {
        #[test]
        fn any_single_char_change_is_rejected(pos in 0usize..(8 + SECRET_LEN), c in "[0-9A-Za-z_]") {
            let k = generate_virtual(Environment::Prod);
            let s = k.expose_secret();
            let mut bytes = s.as_bytes().to_vec();
            let pos = pos % bytes.len();
            let c = c.as_bytes()[0];
            prop_assume!(bytes[pos] != c);
            bytes[pos] = c;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(parse(&changed).is_err());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_accepts_only_checksummed(body in "[0-9A-Za-z]{40}") {
            let prefix = format!("kw_dev_{body}");
            let sum = checksum(prefix.as_bytes());
            let good = format!("{prefix}{}", std::str::from_utf8(&sum).unwrap());
            prop_assert_eq!(parse(&good), Ok(KeyKind::Virtual(Environment::Dev)));
        }
    }
}
