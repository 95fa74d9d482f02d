//! The master key and what is derived from it.
//!
//! * keyed digests of virtual keys and admin tokens (HMAC-SHA256 under a key
//!   derived from the master key with HKDF), compared in constant time;
//! * envelope encryption of secrets at rest: a random data key per secret
//!   encrypts the value (XChaCha20-Poly1305), and a key-encryption key derived
//!   from the master key wraps the data key;
//! * public fingerprints of upstream keys (SHA-256, truncated), safe to show.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub const MASTER_KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key must be {MASTER_KEY_LEN} bytes (64 hex characters)")]
    MasterKeyFormat,
    #[error("decryption failed: wrong master key or corrupted data")]
    Decrypt,
    #[error("sealed value is malformed")]
    Malformed,
}

/// The root secret of an installation. Debug prints a redaction; the bytes are
/// zeroized on drop.
pub struct MasterKey(SecretBox<[u8; MASTER_KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut bytes = Box::new([0u8; MASTER_KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        MasterKey(SecretBox::new(bytes))
    }

    /// Parse the hex text stored in the master key file.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let raw = Zeroizing::new(hex::decode(text.trim()).map_err(|_| CryptoError::MasterKeyFormat)?);
        if raw.len() != MASTER_KEY_LEN {
            return Err(CryptoError::MasterKeyFormat);
        }
        let mut bytes = Box::new([0u8; MASTER_KEY_LEN]);
        bytes.copy_from_slice(&raw);
        Ok(MasterKey(SecretBox::new(bytes)))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.expose_secret()))
    }

    fn derive(&self, info: &str) -> Zeroizing<[u8; 32]> {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"keyward"), self.0.expose_secret());
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is always a valid HKDF-SHA256 output length
        let _ = hk.expand(info.as_bytes(), out.as_mut());
        out
    }

    pub fn digester(&self) -> Digester {
        Digester::new(self.derive("keyward/v1/key-digest").as_ref())
    }

    pub fn envelope(&self) -> Envelope {
        Envelope { kek: self.derive("keyward/v1/kek") }
    }

    /// Seed for the audit signing key (used by the audit log).
    pub fn derive_seed(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        self.derive(&format!("keyward/v1/{purpose}"))
    }
}

/// Keyed digest of a presented credential.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(KeyDigest)
    }
}

impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyDigest({}…)", &hex::encode(&self.0[..4]))
    }
}

/// Keyed digests of presented secrets. Holds the HMAC state after the key
/// (its inner and outer pads), so a digest costs two compressions, not four.
#[derive(Clone)]
pub struct Digester {
    keyed: Hmac<Sha256>,
}

impl Digester {
    fn new(key: &[u8]) -> Digester {
        let keyed =
            <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        Digester { keyed }
    }

    pub fn digest(&self, presented: &str) -> KeyDigest {
        let mut mac = self.keyed.clone();
        mac.update(presented.as_bytes());
        KeyDigest(mac.finalize().into_bytes().into())
    }
}

/// A value sealed under the envelope scheme, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// nonce (24) || encrypted data key (32 + 16 tag)
    pub wrapped_key: Vec<u8>,
    /// nonce (24) || ciphertext + tag
    pub ciphertext: Vec<u8>,
}

pub struct Envelope {
    kek: Zeroizing<[u8; 32]>,
}

const NONCE_LEN: usize = 24;

fn seal_raw(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut out = nonce.to_vec();
    // encryption with a valid key and nonce cannot fail for in-memory buffers
    let ct = cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad }).unwrap_or_default();
    out.extend_from_slice(&ct);
    out
}

fn open_raw(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Malformed);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

impl Envelope {
    /// Seal `secret`, binding it to `context` (e.g. the secret's name) so a
    /// ciphertext cannot be swapped between records.
    pub fn seal(&self, secret: &SecretString, context: &str) -> Sealed {
        let mut dek = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(dek.as_mut());
        let ciphertext = seal_raw(&dek, secret.expose_secret().as_bytes(), context.as_bytes());
        let wrapped_key = seal_raw(&self.kek, dek.as_ref(), context.as_bytes());
        Sealed { wrapped_key, ciphertext }
    }

    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<SecretString, CryptoError> {
        let dek = open_raw(&self.kek, &sealed.wrapped_key, context.as_bytes())?;
        let dek: &[u8; 32] = dek.as_slice().try_into().map_err(|_| CryptoError::Malformed)?;
        let plain = open_raw(dek, &sealed.ciphertext, context.as_bytes())?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| CryptoError::Malformed)?;
        Ok(SecretString::from(text))
    }
}

/// SHA-256 hex of a secret: the scanner's `fingerprint`, and how upstream keys
/// are matched against findings.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Short public fingerprint for listings: `sha256:` + first 16 hex characters.
pub fn fingerprint(secret: &str) -> String {
    format!("sha256:{}", &sha256_hex(secret)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_roundtrips_through_hex() {
        let m = MasterKey::generate();
        let again = MasterKey::from_hex(&m.to_hex()).unwrap();
        assert_eq!(m.digester().digest("x"), again.digester().digest("x"));
        assert!(MasterKey::from_hex("abcd").is_err());
        assert_eq!(format!("{m:?}"), "MasterKey([REDACTED])");
    }

    #[test]
    fn digests_are_keyed() {
        let a = MasterKey::generate().digester();
        let b = MasterKey::generate().digester();
        assert_ne!(a.digest("same"), b.digest("same"));
        assert!(a.digest("same").ct_eq(&a.digest("same")));
        assert!(!a.digest("same").ct_eq(&a.digest("other")));
    }

    /// Digests are stored with every key: the keyed state must give exactly
    /// HMAC-SHA256 under the derived key, for every call (RFC 4231 test case 2).
    #[test]
    fn digest_is_hmac_sha256_of_the_derived_key() {
        let d = Digester::new(b"Jefe");
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        for _ in 0..3 {
            assert_eq!(hex::encode(d.digest("what do ya want for nothing?").0), want);
        }
        let m = MasterKey::generate();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(m.derive("keyward/v1/key-digest").as_ref()).unwrap();
        mac.update(b"kw_dev_example");
        assert_eq!(m.digester().digest("kw_dev_example").0, <[u8; 32]>::from(mac.finalize().into_bytes()));
    }

    #[test]
    fn envelope_roundtrip_and_binding() {
        let m = MasterKey::generate();
        let env = m.envelope();
        let secret = SecretString::from("sk-ant-test-value".to_string());
        let sealed = env.seal(&secret, "ups_1");
        assert_eq!(env.open(&sealed, "ups_1").unwrap().expose_secret(), "sk-ant-test-value");
        assert!(env.open(&sealed, "ups_2").is_err());
        assert!(MasterKey::generate().envelope().open(&sealed, "ups_1").is_err());
        let mut tampered = sealed.clone();
        let last = tampered.ciphertext.len() - 1;
        tampered.ciphertext[last] ^= 1;
        assert!(env.open(&tampered, "ups_1").is_err());
        assert!(!sealed.ciphertext.windows(8).any(|w| w == b"sk-ant-t"));
    }
}
