//! Feature extraction for the fast stage.
//!
//! A normalised text is cut into overlapping windows of `window` bytes every
//! `stride` bytes (one window if it is shorter). A window's features are
//! * hashed byte 3-, 4- and 5-grams and hashed word uni- and bigrams, each
//!   counted where it starts, the counts scaled by `1/sqrt(n)` (n = events in the
//!   window), so that the n-gram part of the score is an average, not a sum, and
//!   a window's length says nothing by itself;
//! * [`DENSE`] hand-made features for what injections do: addressing the AI,
//!   claiming authority, pointing at prior instructions or the system prompt,
//!   fake role or turn markers, send/forward verbs joined to exfiltration targets
//!   (URLs, e-mail addresses, markdown images), secrets, second-person orders,
//!   known non-English injection phrases, decoded payloads, and what
//!   normalisation had to undo (invisible characters, look-alikes, leetspeak).
//!
//! Because the n-gram part is additive, the scorer needs no per-window vector:
//! it keeps prefix sums of weights and event counts per block of positions
//! (window bounds fall on block bounds) and reads each window off them in O(1).

use super::normalize::{Flags, ENC_MARKER};
use std::sync::LazyLock;

/// Number of hand-made features.
pub const DENSE: usize = 16;

/// Shape of the feature space; stored in the weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// log2 of the number of n-gram buckets.
    pub bits: u32,
    /// Window length in bytes of normalised text.
    pub window: u32,
    /// Distance between window starts.
    pub stride: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params { bits: 18, window: 160, stride: 64 }
    }
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const CHAR_SEED: u64 = 0xcbf2_9ce4_8422_2325;
const WORD_SEED: u64 = 0x84222325_cbf29ce4;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// `FNV_PRIME * GOLDEN` (mod 2^64), see [`char_ngram_buckets`].
const PRIME_GOLDEN: u64 = FNV_PRIME.wrapping_mul(GOLDEN);

#[inline]
fn bucket(h: u64, bits: u32) -> u32 {
    (h.wrapping_mul(GOLDEN) >> (64 - bits)) as u32
}

/// ASCII letters and digits, and every byte of a non-ASCII character.
static WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b >= 0x80;
        i += 1;
    }
    t
};

#[inline]
fn is_word_byte(b: u8) -> bool {
    WORD_BYTE[usize::from(b)]
}

const fn fnv_step(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(FNV_PRIME)
}

/// The char n-gram hash after its first byte, per byte value.
static CHAR_FIRST: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = fnv_step(CHAR_SEED, i as u8);
        i += 1;
    }
    t
};

/// Call `emit(position, bucket)` for every n-gram event of `text`, in
/// increasing position order per kind (char n-grams first, then words).
#[inline]
pub fn for_each_event(text: &[u8], bits: u32, mut emit: impl FnMut(usize, u32)) {
    for_each_char_position(text, bits, |i, buckets| {
        for &b in buckets {
            emit(i, b);
        }
    });
    for_each_word_event(text, bits, emit);
}

/// Buckets of the byte 3-, 4- and 5-grams that start with the bytes `g`.
#[inline(always)]
pub fn char_ngram_buckets(g: [u8; 5], bits: u32) -> [u32; 3] {
    // `bucket(step(h, b))` multiplies `h ^ b` by FNV_PRIME and then GOLDEN;
    // multiplying once by their product (mod 2^64) gives the same bits, so
    // the 5-gram's hash itself is never formed: six multiplications, not seven.
    let top = |x: u64| (x.wrapping_mul(PRIME_GOLDEN) >> (64 - bits)) as u32;
    let x3 = fnv_step(CHAR_FIRST[usize::from(g[0])], g[1]) ^ u64::from(g[2]);
    let x4 = x3.wrapping_mul(FNV_PRIME) ^ u64::from(g[3]);
    let x5 = x4.wrapping_mul(FNV_PRIME) ^ u64::from(g[4]);
    [top(x3), top(x4), top(x5)]
}

/// Byte 3-, 4- and 5-grams starting at each position: `emit(position,
/// buckets)` with up to three buckets (fewer near the end). Every position
/// below `text.len() - 4` has all three, from [`char_ngram_buckets`].
#[inline]
pub fn for_each_char_position(text: &[u8], bits: u32, mut emit: impl FnMut(usize, &[u32])) {
    let n = text.len();
    let step = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    for (i, w) in text.windows(5).enumerate() {
        if let &[a, b, c, d, e] = w {
            emit(i, &char_ngram_buckets([a, b, c, d, e], bits));
        }
    }
    let mut i = n.saturating_sub(4);
    // The last positions, where not every length fits.
    while i < n {
        let mut h = CHAR_SEED;
        let mut out = [0u32; 3];
        let mut k = 0;
        for (j, &b) in text[i..].iter().enumerate() {
            h = step(h, b);
            if j >= 2 {
                out[k] = bucket(h, bits);
                k += 1;
            }
        }
        emit(i, &out[..k]);
        i += 1;
    }
}

/// Word unigrams and bigrams, at the position where the (second) word starts.
#[inline]
pub fn for_each_word_event(text: &[u8], bits: u32, mut emit: impl FnMut(usize, u32)) {
    let n = text.len();
    let mut prev: u64 = 0;
    let mut i = 0;
    while i < n {
        if !is_word_byte(text[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let mut h = WORD_SEED;
        while i < n && is_word_byte(text[i]) {
            h = (h ^ u64::from(text[i])).wrapping_mul(FNV_PRIME);
            i += 1;
        }
        emit(start, bucket(h, bits));
        if prev != 0 {
            let bi = (prev.rotate_left(29) ^ h).wrapping_mul(FNV_PRIME) ^ 0x5bd1_e995;
            emit(start, bucket(bi, bits));
        }
        prev = h;
    }
}

/// Categories of the hand-made lexicon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Cat {
    Ai = 0,
    Authority = 1,
    Prior = 2,
    Role = 3,
    Send = 4,
    Target = 5,
    Secret = 6,
    You = 7,
    Foreign = 8,
    Encoded = 9,
}
const CATS: usize = 10;

/// (pattern, category, whole word). Patterns are matched on folded text; a
/// "whole word" pattern must have word boundaries on both sides, the others
/// only on the left (so `send` also matches `sending`).
const LEXICON: &[(&str, Cat, bool)] = &[
    // addressing the AI
    ("ai", Cat::Ai, true),
    ("a.i.", Cat::Ai, true),
    ("assistant", Cat::Ai, false),
    ("chatbot", Cat::Ai, false),
    ("chatgpt", Cat::Ai, false),
    ("gpt", Cat::Ai, false),
    ("claude", Cat::Ai, false),
    ("llm", Cat::Ai, false),
    ("language model", Cat::Ai, false),
    ("ai model", Cat::Ai, false),
    ("copilot", Cat::Ai, false),
    ("dear ai", Cat::Ai, false),
    ("agent", Cat::Ai, true),
    ("bot", Cat::Ai, true),
    ("model", Cat::Ai, true),
    // authority
    ("admin", Cat::Authority, false),
    ("administrator", Cat::Authority, false),
    ("developer mode", Cat::Authority, false),
    ("dev mode", Cat::Authority, false),
    ("god mode", Cat::Authority, false),
    ("jailbreak", Cat::Authority, false),
    ("dan", Cat::Authority, true),
    ("security team", Cat::Authority, false),
    ("it department", Cat::Authority, false),
    ("from now on", Cat::Authority, false),
    ("important", Cat::Authority, false),
    ("urgent", Cat::Authority, false),
    ("mandatory", Cat::Authority, false),
    ("override", Cat::Authority, false),
    ("authorized", Cat::Authority, false),
    ("authorised", Cat::Authority, false),
    ("root access", Cat::Authority, false),
    ("sudo", Cat::Authority, true),
    ("compliance", Cat::Authority, false),
    ("unrestricted", Cat::Authority, false),
    ("no restrictions", Cat::Authority, false),
    ("without restrictions", Cat::Authority, false),
    ("maintenance mode", Cat::Authority, false),
    ("debug mode", Cat::Authority, false),
    // prior instructions, the system prompt
    ("ignore", Cat::Prior, false),
    ("disregard", Cat::Prior, false),
    ("forget", Cat::Prior, false),
    ("previous instructions", Cat::Prior, false),
    ("prior instructions", Cat::Prior, false),
    ("above instructions", Cat::Prior, false),
    ("earlier instructions", Cat::Prior, false),
    ("all instructions", Cat::Prior, false),
    ("original instructions", Cat::Prior, false),
    ("new instructions", Cat::Prior, false),
    ("updated instructions", Cat::Prior, false),
    ("system prompt", Cat::Prior, false),
    ("initial prompt", Cat::Prior, false),
    ("hidden prompt", Cat::Prior, false),
    ("your instructions", Cat::Prior, false),
    ("your rules", Cat::Prior, false),
    ("your guidelines", Cat::Prior, false),
    ("your programming", Cat::Prior, false),
    ("the user", Cat::Prior, true),
    ("instead", Cat::Prior, true),
    ("do not summarize", Cat::Prior, false),
    ("do not summarise", Cat::Prior, false),
    ("stop summarizing", Cat::Prior, false),
    // role and turn markers
    ("system:", Cat::Role, false),
    ("[system]", Cat::Role, false),
    ("(system", Cat::Role, false),
    ("<system>", Cat::Role, false),
    ("</system>", Cat::Role, false),
    ("<|system|>", Cat::Role, false),
    ("<|im_start|>", Cat::Role, false),
    ("<|im_end|>", Cat::Role, false),
    ("<|endoftext|>", Cat::Role, false),
    ("[inst]", Cat::Role, false),
    ("[/inst]", Cat::Role, false),
    ("<<sys>>", Cat::Role, false),
    ("### instruction", Cat::Role, false),
    ("### system", Cat::Role, false),
    ("### response", Cat::Role, false),
    ("human:", Cat::Role, false),
    ("assistant:", Cat::Role, false),
    ("user:", Cat::Role, false),
    ("</s>", Cat::Role, false),
    ("<instructions>", Cat::Role, false),
    ("end of document", Cat::Role, false),
    ("end of email", Cat::Role, false),
    ("system note", Cat::Role, false),
    ("system message", Cat::Role, false),
    ("note to ai", Cat::Role, false),
    ("ai instructions", Cat::Role, false),
    // send / forward verbs
    ("send", Cat::Send, false),
    ("forward", Cat::Send, false),
    ("email", Cat::Send, true),
    ("e-mail", Cat::Send, true),
    ("upload", Cat::Send, false),
    ("exfiltrate", Cat::Send, false),
    ("transmit", Cat::Send, false),
    ("leak", Cat::Send, false),
    ("reveal", Cat::Send, false),
    ("disclose", Cat::Send, false),
    ("post", Cat::Send, true),
    ("submit", Cat::Send, false),
    ("include", Cat::Send, true),
    ("append", Cat::Send, false),
    ("fetch", Cat::Send, false),
    ("visit", Cat::Send, false),
    ("navigate", Cat::Send, false),
    ("click", Cat::Send, false),
    ("render", Cat::Send, false),
    ("print", Cat::Send, true),
    ("output", Cat::Send, true),
    ("repeat", Cat::Send, true),
    ("copy", Cat::Send, true),
    // exfiltration targets
    ("http://", Cat::Target, false),
    ("https://", Cat::Target, false),
    ("www.", Cat::Target, false),
    ("![", Cat::Target, false),
    ("webhook", Cat::Target, false),
    ("pastebin", Cat::Target, false),
    ("ngrok", Cat::Target, false),
    // secrets and private data
    ("password", Cat::Secret, false),
    ("passwd", Cat::Secret, false),
    ("api key", Cat::Secret, false),
    ("api_key", Cat::Secret, false),
    ("apikey", Cat::Secret, false),
    ("credential", Cat::Secret, false),
    ("token", Cat::Secret, false),
    ("secret", Cat::Secret, false),
    ("private key", Cat::Secret, false),
    ("ssh key", Cat::Secret, false),
    ("credit card", Cat::Secret, false),
    ("social security", Cat::Secret, false),
    ("conversation history", Cat::Secret, false),
    ("chat history", Cat::Secret, false),
    ("previous messages", Cat::Secret, false),
    ("personal data", Cat::Secret, false),
    ("contacts", Cat::Secret, true),
    ("inbox", Cat::Secret, true),
    // second-person orders
    ("you must", Cat::You, false),
    ("you will", Cat::You, false),
    ("you are now", Cat::You, false),
    ("you are no longer", Cat::You, false),
    ("you should now", Cat::You, false),
    ("you have been", Cat::You, false),
    ("act as", Cat::You, false),
    ("pretend", Cat::You, false),
    ("roleplay", Cat::You, false),
    ("role-play", Cat::You, false),
    ("do not tell", Cat::You, false),
    ("don't tell", Cat::You, false),
    ("do not mention", Cat::You, false),
    ("don't mention", Cat::You, false),
    ("do not inform", Cat::You, false),
    ("without telling", Cat::You, false),
    ("without informing", Cat::You, false),
    ("without asking", Cat::You, false),
    ("do not reveal", Cat::You, false),
    ("respond only", Cat::You, false),
    ("reply only", Cat::You, false),
    ("only respond", Cat::You, false),
    ("your response", Cat::You, false),
    ("your answer", Cat::You, false),
    ("your reply", Cat::You, false),
    ("your summary", Cat::You, false),
    ("when summarizing", Cat::You, false),
    ("when summarising", Cat::You, false),
    ("if you are an", Cat::You, false),
    ("if you're an", Cat::You, false),
    ("if you are reading", Cat::You, false),
    ("whoever reads", Cat::You, false),
    ("reading this", Cat::You, false),
    // non-English injection phrases
    ("ignoriere", Cat::Foreign, false),
    ("vergiss", Cat::Foreign, false),
    ("anweisungen", Cat::Foreign, false),
    ("ignorez", Cat::Foreign, false),
    ("ignore les", Cat::Foreign, false),
    ("oubliez", Cat::Foreign, false),
    ("oublie", Cat::Foreign, false),
    ("instructions précédentes", Cat::Foreign, false),
    ("ignora", Cat::Foreign, false),
    ("olvida", Cat::Foreign, false),
    ("instrucciones", Cat::Foreign, false),
    ("istruzioni", Cat::Foreign, false),
    ("ignore as", Cat::Foreign, false),
    ("instruções", Cat::Foreign, false),
    ("negeer", Cat::Foreign, false),
    ("instructies", Cat::Foreign, false),
    ("zignoruj", Cat::Foreign, false),
    ("instrukcje", Cat::Foreign, false),
    ("игнорируй", Cat::Foreign, false),
    ("инструкции", Cat::Foreign, false),
    ("забудь", Cat::Foreign, false),
    ("忽略", Cat::Foreign, false),
    ("忘记", Cat::Foreign, false),
    ("指令", Cat::Foreign, false),
    ("指示を無視", Cat::Foreign, false),
    ("無視して", Cat::Foreign, false),
    ("무시", Cat::Foreign, false),
    ("지시", Cat::Foreign, false),
    ("تجاهل", Cat::Foreign, false),
    ("अनदेखा", Cat::Foreign, false),
    ("निर्देश", Cat::Foreign, false),
    ("talimat", Cat::Foreign, false),
    ("bỏ qua", Cat::Foreign, false),
    ("abaikan", Cat::Foreign, false),
    // decoded payload marker
    (ENC_MARKER, Cat::Encoded, true),
];

/// The lexicon's patterns grouped by their first two bytes, for a search
/// with the semantics of a leftmost-longest Aho-Corasick automaton (the
/// leftmost start wins, then the longest pattern there; the next search
/// starts where that match ends) that is cheap where nothing matches: most
/// positions are ruled out by one bit.
///
/// An automaton walks from state to state, one dependent load per byte; here
/// the positions are tested independently (a bit per hashed triple of bytes,
/// 8 KiB), and only the few that pass compare patterns.
struct Lexicon {
    /// Bit `a + 256 * b`: some pattern starts with the bytes `a b`.
    pairs: Box<[u64; 1024]>,
    /// Bit [`tri_bit`] of the first three bytes of every pattern (bits shared
    /// by several triples only let more positions through to the comparison).
    triples: Box<[u64; 1024]>,
    /// Bit `a + 256 * b`: the two bytes `a b` are a pattern (the triple test does not apply).
    short: Box<[u64; 1024]>,
    /// Bit [`tri_bit`] of every three bytes a match may start with: the first
    /// three of a pattern, or a two-byte pattern and any byte. The search
    /// compares patterns only at positions whose bit is set.
    starts: Box<[u64; 1024]>,
    /// Per pair `a + 256 * b`: 1 + its index in `groups`, or 0.
    slot: Vec<u16>,
    /// Pattern indices per pair, longest first.
    groups: Vec<Vec<usize>>,
    /// Per pattern: its first (up to) eight bytes as a little-endian word,
    /// and the mask of those bytes.
    heads: Vec<(u64, u64)>,
}

/// Bit of the bitmap [`Lexicon::triples`] for the three low bytes of `w`.
#[inline]
fn tri_bit(w: u64) -> usize {
    ((w as u32 & 0x00FF_FFFF).wrapping_mul(0x9E37_79B1) >> 16) as usize
}

fn set_bit(bits: &mut [u64; 1024], i: usize) {
    bits[(i >> 6) & 1023] |= 1 << (i & 63);
}

#[inline(always)]
fn bit(bits: &[u64; 1024], i: usize) -> bool {
    bits[(i >> 6) & 1023] >> (i & 63) & 1 == 1
}

/// The eight bytes at `at` as a little-endian word, zero past the end.
#[inline]
fn word_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    match b.get(at..at + 8) {
        Some(w) => a.copy_from_slice(w),
        None => {
            let tail = b.get(at..).unwrap_or_default();
            a[..tail.len()].copy_from_slice(tail);
        }
    }
    u64::from_le_bytes(a)
}

impl Lexicon {
    fn new() -> Self {
        let mut lex = Lexicon {
            pairs: Box::new([0; 1024]),
            triples: Box::new([0; 1024]),
            short: Box::new([0; 1024]),
            starts: Box::new([0; 1024]),
            slot: vec![0; 1 << 16],
            groups: Vec::new(),
            heads: Vec::new(),
        };
        for (i, (pat, _, _)) in LEXICON.iter().enumerate() {
            let k = pat.len().min(8);
            let mask = if k == 8 { u64::MAX } else { (1u64 << (8 * k)) - 1 };
            lex.heads.push((word_at(&pat.as_bytes()[..k], 0), mask));
            // Every pattern is at least two bytes long (a test checks it).
            let &[a, b, ..] = pat.as_bytes() else { continue };
            let pair = usize::from(a) | usize::from(b) << 8;
            set_bit(&mut lex.pairs, pair);
            let tri = |c: u8| tri_bit(u64::from(a) | u64::from(b) << 8 | u64::from(c) << 16);
            match pat.as_bytes().get(2) {
                Some(&c) => {
                    set_bit(&mut lex.triples, tri(c));
                    set_bit(&mut lex.starts, tri(c));
                }
                None => {
                    set_bit(&mut lex.short, pair);
                    for c in 0..=u8::MAX {
                        set_bit(&mut lex.starts, tri(c));
                    }
                }
            }
            if lex.slot[pair] == 0 {
                lex.groups.push(Vec::new());
                lex.slot[pair] = lex.groups.len() as u16;
            }
            lex.groups[usize::from(lex.slot[pair]) - 1].push(i);
        }
        for g in &mut lex.groups {
            // Longest first; patterns are distinct, so equal lengths never both match.
            g.sort_by_key(|&i| (std::cmp::Reverse(LEXICON[i].0.len()), i));
        }
        lex
    }

    /// The longest pattern that starts at `at` (whose first two bytes form
    /// `pair`, a pair in [`Lexicon::pairs`]), if any.
    #[inline]
    fn longest_at(&self, b: &[u8], at: usize, pair: usize) -> Option<usize> {
        // Text bytes past the end read as zero, which no pattern holds.
        let w = word_at(b, at);
        if !bit(&self.triples, tri_bit(w)) && !bit(&self.short, pair) {
            return None;
        }
        let group = self.groups.get(usize::from(self.slot[pair]).checked_sub(1)?)?;
        group.iter().copied().find(|&i| {
            let (head, mask) = self.heads[i];
            let pat = LEXICON[i].0.as_bytes();
            w & mask == head && (pat.len() <= 8 || b[at..].starts_with(pat))
        })
    }

    /// Every match, leftmost-longest and non-overlapping: `(start, end, pattern)`.
    fn for_each_match(&self, b: &[u8], mut emit: impl FnMut(usize, usize, usize)) {
        // Every pattern has two bytes or more: a position needs a byte after it.
        let last = b.len().saturating_sub(1);
        // Where the next match may start (matches do not overlap).
        let mut at = 0;
        for base in (0..last).step_by(64) {
            let end = (base + 64).min(last);
            // One bit per position whose three bytes may start a match
            // ([`Lexicon::starts`]), tested without a branch per position: few
            // positions pass (about 8 % of those in English prose, a quarter
            // of those that a test of the first two bytes lets through).
            let mut candidates = 0u64;
            if end + 2 <= b.len() {
                for (j, w) in b[base..end + 2].windows(3).enumerate() {
                    let t = u64::from(w[0]) | u64::from(w[1]) << 8 | u64::from(w[2]) << 16;
                    candidates |= u64::from(bit(&self.starts, tri_bit(t))) << j;
                }
            } else {
                // The last block: bytes past the end read as zero, as in `longest_at`.
                for p in base..end {
                    candidates |= u64::from(bit(&self.starts, tri_bit(word_at(b, p)))) << (p - base);
                }
            }
            while candidates != 0 {
                let p = base + candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                if p < at {
                    continue;
                }
                let pair = usize::from(b[p]) | usize::from(b[p + 1]) << 8;
                if !bit(&self.pairs, pair) {
                    continue;
                }
                if let Some(i) = self.longest_at(b, p, pair) {
                    at = p + LEXICON[i].0.len();
                    emit(p, at, i);
                }
            }
        }
    }
}

static MATCHER: LazyLock<Lexicon> = LazyLock::new(Lexicon::new);

/// Build the keyword tables now rather than on the first score.
pub fn warm_up() {
    LazyLock::force(&MATCHER);
    LazyLock::force(&LN_1P);
    super::normalize::warm_up();
}

fn boundary_before(text: &[u8], start: usize) -> bool {
    start == 0 || !is_word_byte(text[start - 1])
}

fn boundary_after(text: &[u8], end: usize) -> bool {
    end >= text.len() || !is_word_byte(text[end])
}

/// Lexicon hits and e-mail addresses: `(position, category)`, by position.
fn lexicon_hits(text: &str) -> Vec<(usize, Cat)> {
    let b = text.as_bytes();
    let mut hits = Vec::new();
    MATCHER.for_each_match(b, |start, end, i| {
        let (pat, cat, whole) = LEXICON[i];
        let first_is_word = pat.as_bytes().first().is_some_and(|&c| is_word_byte(c));
        if first_is_word && !boundary_before(b, start) {
            return;
        }
        let last_is_word = pat.as_bytes().last().is_some_and(|&c| is_word_byte(c));
        if whole && last_is_word && !boundary_after(b, end) {
            return;
        }
        hits.push((start, cat));
    });
    // E-mail addresses: word@word.word (stretches without '@' skipped with a word-at-a-time search).
    let ats = b.chunks(64).enumerate().filter(|(_, c)| c.contains(&b'@'));
    for at in ats.flat_map(|(k, c)| c.iter().enumerate().filter(|(_, &x)| x == b'@').map(move |(j, _)| 64 * k + j)) {
        let left = at > 0 && b[at - 1].is_ascii_alphanumeric();
        let domain = &b[at + 1..];
        let dom_len = domain.iter().take_while(|&&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-').count();
        let dom = &domain[..dom_len];
        let dotted = dom.iter().position(|&c| c == b'.').is_some_and(|p| p > 0 && p + 1 < dom.len());
        if left && dotted {
            hits.push((at, Cat::Target));
        }
    }
    hits.sort_by_key(|h| h.0);
    hits
}

/// Start and end (exclusive) of each window over a text of `len` bytes.
pub fn windows(len: usize, p: Params) -> Vec<(usize, usize)> {
    let (w, s) = (p.window as usize, (p.stride as usize).max(1));
    if len <= w {
        return vec![(0, len)];
    }
    let mut out = Vec::with_capacity((len - w) / s + 2);
    let mut start = 0;
    while start + w < len {
        out.push((start, start + w));
        start += s;
    }
    out.push((len - w, len));
    out
}

/// Text-level context for the dense features.
#[derive(Debug, Clone)]
pub struct Context {
    hits: Vec<(usize, Cat)>,
    flags: Flags,
}

impl Context {
    pub fn new(text: &str, flags: Flags) -> Self {
        Context { hits: lexicon_hits(text), flags }
    }

    /// The dense features of the window `[start, end)`.
    pub fn dense(&self, start: usize, end: usize) -> [f32; DENSE] {
        let from = self.hits.partition_point(|h| h.0 < start);
        self.dense_from(from, start, end)
    }

    /// The dense features of a window without lexicon hits (only the flags count).
    pub fn dense_without_hits(&self) -> [f32; DENSE] {
        self.dense_from(self.hits.len(), 0, 0)
    }

    /// A reader of dense features for windows whose starts never decrease
    /// (as [`windows`] yields them): it finds the first hit of each window by
    /// moving forward instead of searching.
    pub fn dense_cursor(&self) -> DenseCursor<'_> {
        DenseCursor { ctx: self, from: 0 }
    }

    /// The dense features of `[start, end)`, given the index of the first hit at or after `start`.
    fn dense_from(&self, from: usize, start: usize, end: usize) -> [f32; DENSE] {
        let mut c = [0u32; CATS];
        for &(pos, cat) in &self.hits[from..] {
            if pos >= end {
                break;
            }
            debug_assert!(pos >= start);
            c[cat as usize] += 1;
        }
        let mut d = [0f32; DENSE];
        for (k, &n) in c.iter().enumerate() {
            d[k] = ln_1p_count(n);
        }
        let has = |cat: Cat| c[cat as usize] > 0;
        let both = |a: bool, b: bool| if a && b { 1.0 } else { 0.0 };
        d[10] = both(has(Cat::Send), has(Cat::Target));
        d[11] = both(has(Cat::Prior), has(Cat::Ai) || has(Cat::You));
        d[12] = both(has(Cat::Send), has(Cat::Secret));
        d[13] = both(has(Cat::Role), has(Cat::Authority) || has(Cat::Prior) || has(Cat::You));
        d[14] = if self.flags.invisible { 1.0 } else { 0.0 };
        d[15] = if self.flags.obfuscated { 1.0 } else { 0.0 };
        d
    }
}

/// See [`Context::dense_cursor`].
pub struct DenseCursor<'a> {
    ctx: &'a Context,
    from: usize,
}

impl DenseCursor<'_> {
    /// The dense features of `[start, end)`, or `None` when no lexicon hit lies
    /// in it (the features are then [`Context::dense_without_hits`]); `start`
    /// must not be below the previous call's.
    pub fn dense(&mut self, start: usize, end: usize) -> Option<[f32; DENSE]> {
        let hits = &self.ctx.hits;
        while self.from < hits.len() && hits[self.from].0 < start {
            self.from += 1;
        }
        hits.get(self.from).is_some_and(|h| h.0 < end).then(|| self.ctx.dense_from(self.from, start, end))
    }
}

/// `ln(1 + n)` of small counts, computed once (the same `f32::ln_1p` values).
static LN_1P: LazyLock<[f32; 64]> = LazyLock::new(|| std::array::from_fn(|n| (n as f32).ln_1p()));

#[inline]
fn ln_1p_count(n: u32) -> f32 {
    match LN_1P.get(n as usize) {
        Some(&v) => v,
        None => (n as f32).ln_1p(),
    }
}

/// The explicit features of one window, as the trainer needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowFeatures {
    /// Byte range of the window in the normalised text.
    pub start: usize,
    pub end: usize,
    /// Bucket and value (count / sqrt(events)), sorted by bucket, no repeats.
    pub sparse: Vec<(u32, f32)>,
    pub dense: [f32; DENSE],
}

/// Explicit features of every window of a normalised text.
pub fn window_features(text: &str, flags: Flags, p: Params) -> Vec<WindowFeatures> {
    let mut events: Vec<(usize, u32)> = Vec::new();
    for_each_event(text.as_bytes(), p.bits, |pos, b| events.push((pos, b)));
    let ctx = Context::new(text, flags);
    windows(text.len(), p)
        .into_iter()
        .map(|(start, end)| {
            let mut bs: Vec<u32> = events.iter().filter(|(pos, _)| *pos >= start && *pos < end).map(|e| e.1).collect();
            let n = bs.len().max(1) as f32;
            let inv = 1.0 / n.sqrt();
            bs.sort_unstable();
            let mut sparse: Vec<(u32, f32)> = Vec::new();
            for b in bs {
                match sparse.last_mut() {
                    Some((lb, v)) if *lb == b => *v += inv,
                    _ => sparse.push((b, inv)),
                }
            }
            WindowFeatures { start, end, sparse, dense: ctx.dense(start, end) }
        })
        .collect()
}

#[cfg(test)]
mod lexicon_tests {
    use super::{Lexicon, LEXICON};
    use aho_corasick::{AhoCorasickBuilder, AhoCorasickKind, MatchKind};
    use proptest::prelude::*;

    /// The matches of the leftmost-longest automaton the lexicon used to be searched with.
    fn reference(text: &[u8]) -> Vec<(usize, usize, usize)> {
        let Ok(ac) = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(LEXICON.iter().map(|(p, _, _)| p))
        else {
            panic!("the lexicon builds");
        };
        ac.find_iter(text).map(|m| (m.start(), m.end(), m.pattern().as_usize())).collect()
    }

    fn matches(text: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        Lexicon::new().for_each_match(text, |s, e, i| out.push((s, e, i)));
        out
    }

    /// Pieces that make overlapping, nested and cut-off matches likely.
    fn piece(k: usize) -> String {
        let (pat, _, _) = LEXICON[k % LEXICON.len()];
        let b = pat.as_bytes();
        let cut = |r: std::ops::Range<usize>| String::from_utf8_lossy(&b[r]).into_owned();
        match k / LEXICON.len() % 6 {
            0 | 1 => pat.to_owned(),
            2 => cut(0..b.len() / 2),
            3 => cut(b.len() / 2..b.len()),
            4 => [" ", "x", ".", "<", "|", "@", "\n", "a", "i", "s", "é"][k % 11].to_owned(),
            _ => cut(1..b.len()),
        }
    }

    #[test]
    fn every_pattern_has_two_bytes() {
        assert!(LEXICON.iter().all(|(p, _, _)| p.len() >= 2));
    }

    #[test]
    fn lexicon_matches_automaton_on_the_patterns() {
        let all: String = LEXICON.iter().map(|(p, _, _)| *p).collect::<Vec<_>>().join("");
        assert_eq!(matches(all.as_bytes()), reference(all.as_bytes()));
        let spaced: String = LEXICON.iter().map(|(p, _, _)| *p).collect::<Vec<_>>().join(" ");
        assert_eq!(matches(spaced.as_bytes()), reference(spaced.as_bytes()));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn lexicon_matches_automaton(parts in proptest::collection::vec(0usize..2000, 0..80)) {
            let text: String = parts.into_iter().map(piece).collect();
            prop_assert_eq!(matches(text.as_bytes()), reference(text.as_bytes()));
        }

        #[test]
        fn lexicon_matches_automaton_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(matches(&bytes), reference(&bytes));
        }
    }
}
