//! Synthetic secrets of the exact shapes the detectors match, for tests,
//! fuzzing and benchmark corpora. They are generated at run time from a seed so
//! that no key-shaped string is ever committed to a repository; none of them is
//! a live credential.

use super::Kind;

const KEY_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A small deterministic generator (SplitMix64): reproducible corpora, no deps.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; 0 gives 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| char::from(alphabet[self.below(alphabet.len())])).collect()
    }
}

/// An Anthropic-shaped key (`kind` must be an Anthropic kind; other kinds give
/// an API-key shape).
pub fn anthropic_key(kind: Kind, rng: &mut Rng) -> String {
    let prefix = match kind {
        Kind::AnthropicAdminKey => "sk-ant-admin01-",
        _ => "sk-ant-api03-",
    };
    loop {
        let free = rng.chars(KEY_ALPHABET, 93);
        let key = format!("{prefix}{free}AA");
        // keep only keys that are also bounded on their own (no `-`/`_` quirks
        // matter here) and that the placeholder filter accepts, so a corpus's
        // ground truth is exact
        if super::find_all(key.as_bytes()).len() == 1 {
            return key;
        }
    }
}

/// A keyward key with a valid checksum, built from `rng` (for reproducible
/// corpora; real keys come from `keyward_core::keys`).
pub fn keyward_key(kind: Kind, rng: &mut Rng) -> String {
    const BASE62: &[u8] = keyward_core::base62::ALPHABET;
    let prefix = match kind {
        Kind::KeywardAdminToken => "kwa_".to_string(),
        _ => ["kw_dev_", "kw_stg_", "kw_prod_"][rng.below(3)].to_string(),
    };
    let mut s = prefix;
    s.push_str(&rng.chars(BASE62, keyward_core::keys::RANDOM_LEN));
    let sum = keyward_core::base62::encode_u32_fixed6(crc32(s.as_bytes()));
    s.extend(sum.iter().map(|&b| char::from(b)));
    s
}

/// A secret of `kind`.
pub fn key(kind: Kind, rng: &mut Rng) -> String {
    if kind.is_upstream() {
        anthropic_key(kind, rng)
    } else {
        keyward_key(kind, rng)
    }
}

/// Look-alikes that must not be reported: wrong lengths, wrong endings,
/// placeholders, keyward keys with a broken checksum, longer runs.
pub fn decoy(rng: &mut Rng) -> String {
    let real = anthropic_key(Kind::AnthropicApiKey, rng);
    match rng.below(8) {
        0 => real[..real.len() - 3].to_string() + "AA", // 92 free characters
        1 => format!("{}xAA", &real[..real.len() - 2]), // 94 free characters
        2 => format!("{}AB", &real[..real.len() - 2]),  // wrong ending
        3 => format!("sk-ant-api03-{}AA", "x".repeat(93)),
        4 => format!("{real}x"),   // longer run
        5 => format!("sk-{real}"), // longer run on the left
        6 => {
            let mut k = keyward_key(Kind::KeywardVirtualKey, rng);
            let last = if k.ends_with('0') { '1' } else { '0' };
            k.pop();
            k.push(last);
            k
        }
        _ => format!("sk-ant-api03-YOUR-KEY-HERE-{}AA", &"0123456789".repeat(8)[..79]),
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    // bitwise CRC-32 (IEEE), the same value crc32fast computes; small and only
    // used to build fixtures
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}
