//! Base62 (`0-9A-Za-z`) helpers used by key formats and identifiers.

use rand::Rng;

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` characters of CSPRNG output drawn uniformly from the base62 alphabet.
pub fn random(n: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..n).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// Fixed-width base62 encoding of a `u32` (6 characters cover 2^32).
pub fn encode_u32_fixed6(mut v: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v % 62) as usize];
        v /= 62;
    }
    out
}

pub fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed6_is_injective_on_samples() {
        assert_eq!(&encode_u32_fixed6(0), b"000000");
        assert_eq!(&encode_u32_fixed6(61), b"00000z");
        assert_eq!(&encode_u32_fixed6(62), b"000010");
        assert_ne!(encode_u32_fixed6(u32::MAX), encode_u32_fixed6(u32::MAX - 1));
    }

    #[test]
    fn random_has_requested_length_and_alphabet() {
        let s = random(64);
        assert_eq!(s.len(), 64);
        assert!(s.bytes().all(is_base62));
        assert_ne!(random(32), random(32));
    }
}
