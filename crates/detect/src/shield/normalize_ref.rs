//! The normaliser as it was before it was optimised (commit 8ba5e74), kept
//! as a test oracle: `normalize` here and in [`super::normalize`] must agree
//! on every input (see `normalize_matches_reference` in `tests.rs`). The
//! shared types, and the leaf functions the optimisation left untouched
//! (decoders, character maps, word output), come from the real module;
//! everything else is the old code.
#![allow(dead_code)]

use super::normalize::{
    add_level, as_text, decode_run, flush_singles, fold_leet, homoglyph, is_b64_byte, is_invisible, join_wrapped,
    letter_symbol, percent_tokens, plain_ascii_token, push_word, Normalized, ENC_MARKER,
};
use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;

/// Encoded runs shorter than this are left alone (hashes, ids and words
/// of ordinary length are not worth decoding).
const MIN_ENCODED_RUN: usize = 16;
/// At most this many payloads are decoded from one text (nested ones included).
const MAX_PAYLOADS: usize = 8;
/// Payloads are decoded again at most this deep (base64 inside base64).
const MAX_DEPTH: usize = 2;

/// Normalise a text: clean, extract encoded payloads, fold.
pub fn normalize(input: &str) -> Normalized {
    let mut out = Normalized::default();
    normalize_into(input, 0, &mut out);
    out
}

fn normalize_into(input: &str, depth: usize, out: &mut Normalized) {
    let (cleaned, invisible) = clean(input);
    out.flags.invisible |= invisible;
    let mut decoded = Vec::new();
    let joined = join_wrapped(&cleaned);
    let main = extract_encoded(&joined, &mut decoded);
    let (text, obfuscated) = fold(&main);
    out.flags.obfuscated |= obfuscated;
    add_level(text, depth, out);
    for d in decoded {
        if out.payloads.len() >= MAX_PAYLOADS {
            break;
        }
        if depth < MAX_DEPTH {
            normalize_into(&d, depth + 1, out);
        }
    }
}

/// Pass 1: remove invisibles, decode tag characters, NFKC. Returns whether any
/// invisible or tag character was seen.
///
/// NFKC is applied only to the whitespace-delimited chunks that need it: an
/// ASCII whitespace character is a starter that composes with nothing, so
/// normalising chunk by chunk gives the same result as the whole text.
pub fn clean(input: &str) -> (Cow<'_, str>, bool) {
    if input.is_ascii() {
        return (Cow::Borrowed(input), false);
    }
    let is_tag = |c: char| ('\u{E0000}'..='\u{E007F}').contains(&c);
    let invisible = input.chars().any(|c| c >= '\u{AD}' && (is_invisible(c) || is_tag(c)));
    let visible: Cow<'_, str> = if invisible {
        Cow::Owned(
            input
                .chars()
                .filter_map(|c| {
                    let cp = c as u32;
                    if (0xE0020..=0xE007E).contains(&cp) {
                        char::from_u32(cp - 0xE0000)
                    } else if is_invisible(c) || is_tag(c) {
                        None
                    } else {
                        Some(c)
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(input)
    };
    let quick = |s: &str| {
        s.is_ascii() || unicode_normalization::is_nfkc_quick(s.chars()) == unicode_normalization::IsNormalized::Yes
    };
    if quick(&visible) {
        return (visible, invisible);
    }
    let mut out = String::with_capacity(visible.len() + 16);
    for chunk in visible.split_inclusive(|c: char| c.is_ascii_whitespace()) {
        if quick(chunk) {
            out.push_str(chunk);
        } else {
            out.extend(chunk.nfkc().filter(|c| !is_invisible(*c)));
        }
    }
    (Cow::Owned(out), invisible)
}

/// Pass 2: cut base64/hex runs that decode to text out of `s` (pushing the
/// decoded text to `payloads`), and URL-decode tokens full of `%XX` in place.
/// What one pass over the bytes says may be worth decoding.
#[derive(Default)]
struct Candidates {
    base64_or_hex: bool,
    binary: bool,
    percent: bool,
}

fn candidates(b: &[u8]) -> Candidates {
    let mut c = Candidates::default();
    let (mut run, mut bits, mut escapes) = (0usize, 0usize, 0usize);
    for (i, &x) in b.iter().enumerate() {
        run = if is_b64_byte(x) { run + 1 } else { 0 };
        bits = if x == b'0' || x == b'1' { bits + 1 } else { 0 };
        c.base64_or_hex |= run >= MIN_ENCODED_RUN;
        c.binary |= bits >= 8;
        if x == b'%'
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            escapes += 1;
        }
    }
    c.percent = escapes >= 3;
    c
}

fn extract_encoded<'a>(s: &'a str, payloads: &mut Vec<String>) -> Cow<'a, str> {
    let c = candidates(s.as_bytes());
    if !(c.base64_or_hex || c.binary || c.percent) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(extract_encoded_slow(s, c, payloads))
}

fn extract_encoded_slow(s: &str, c: Candidates, payloads: &mut Vec<String>) -> String {
    let binary;
    let s = if c.binary {
        binary = extract_binary(s, payloads);
        binary.as_str()
    } else {
        s
    };
    let b = s.as_bytes();
    // Fast exit: nothing long enough to be a run, no escapes.
    let mut out = String::with_capacity(s.len());
    let mut last = 0usize;
    let mut i = 0usize;
    while i < b.len() {
        if is_b64_byte(b[i]) && (i == 0 || !is_b64_byte(b[i - 1])) {
            let start = i;
            let mut end = i;
            while end < b.len() && is_b64_byte(b[end]) {
                end += 1;
            }
            if end - start >= MIN_ENCODED_RUN && payloads.len() < MAX_PAYLOADS {
                if let Some(text) = decode_run(&b[start..end]) {
                    out.push_str(&s[last..start]);
                    out.push(' ');
                    out.push_str(ENC_MARKER);
                    out.push(' ');
                    payloads.push(text);
                    last = end;
                }
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    out.push_str(&s[last..]);
    let escapes = out
        .as_bytes()
        .windows(3)
        .filter(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
        .take(3)
        .count();
    if escapes >= 3 {
        out = percent_tokens(&out);
    }
    out
}

/// Runs of at least four space-separated 8-bit binary groups (`01001000 01101001`)
/// that decode to text are cut out like base64 runs.
fn extract_binary(s: &str, payloads: &mut Vec<String>) -> String {
    let b = s.as_bytes();
    let is_octet = |i: usize| {
        i + 8 <= b.len()
            && b[i..i + 8].iter().all(|&c| c == b'0' || c == b'1')
            && (i + 8 == b.len() || !b[i + 8].is_ascii_alphanumeric())
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
    };
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    let mut i = 0;
    while i < b.len() {
        if !is_octet(i) {
            i += 1;
            continue;
        }
        let start = i;
        let mut bytes = Vec::new();
        let mut j = i;
        while is_octet(j) {
            let v = b[j..j + 8].iter().fold(0u8, |acc, &c| (acc << 1) | (c - b'0'));
            bytes.push(v);
            j += 8;
            if j < b.len() && b[j] == b' ' && is_octet(j + 1) {
                j += 1;
            }
        }
        if bytes.len() >= 4 && payloads.len() < MAX_PAYLOADS {
            if let Some(text) = as_text(bytes) {
                out.push_str(&s[last..start]);
                out.push(' ');
                out.push_str(ENC_MARKER);
                out.push(' ');
                payloads.push(text);
                last = j;
            }
        }
        i = j.max(i + 1);
    }
    out.push_str(&s[last..]);
    out
}

/// Pass 3: lowercase, fold look-alikes and leetspeak inside words, join spaced
/// letters, collapse whitespace. Returns the text and whether anything inside
/// a word was folded.
pub fn fold(s: &str) -> (String, bool) {
    let mut f = Folder {
        out: String::with_capacity(s.len()),
        obfuscated: false,
        word: Vec::with_capacity(64),
        singles: Vec::new(),
        ascii: s.is_ascii(),
    };
    // Split on ASCII whitespace bytes (fast), then split the rare token that
    // holds other whitespace (vertical tab, U+2028, ...) by `char::is_whitespace`.
    for tok in s.split_ascii_whitespace() {
        if tok.bytes().any(|b| b == 0x0b || b >= 0x80) && tok.chars().any(char::is_whitespace) {
            for t in tok.split(char::is_whitespace).filter(|t| !t.is_empty()) {
                f.token(t);
            }
        } else {
            f.token(tok);
        }
    }
    flush_singles(&mut f.out, &mut f.singles);
    (f.out, f.obfuscated)
}

struct Folder {
    out: String,
    obfuscated: bool,
    word: Vec<char>,
    /// Pending run of single letters ("i g n o r e"), emitted joined if long enough.
    singles: Vec<char>,
    ascii: bool,
}

impl Folder {
    fn token(&mut self, tok: &str) {
        // Fast path: a plain ASCII word has nothing to fold but its case.
        if plain_ascii_token(tok.as_bytes()) {
            flush_singles(&mut self.out, &mut self.singles);
            if !self.out.is_empty() {
                self.out.push(' ');
            }
            let at = self.out.len();
            self.out.push_str(tok);
            self.out.as_mut_str()[at..].make_ascii_lowercase();
            return;
        }
        let word = &mut self.word;
        word.clear();
        for c in tok.chars() {
            if c.is_ascii() {
                word.push(c.to_ascii_lowercase());
            } else if let Some(l) = letter_symbol(c) {
                word.push(l);
                self.obfuscated = true;
            } else {
                word.extend(c.to_lowercase());
            }
        }
        if !self.ascii {
            self.obfuscated |= fold_homoglyphs(word);
        }
        self.obfuscated |= fold_leet(word);
        join_separated(word);
        if word.len() == 1 && word[0].is_alphabetic() {
            self.singles.push(word[0]);
            return;
        }
        flush_singles(&mut self.out, &mut self.singles);
        push_word(&mut self.out, word);
    }
}

fn fold_homoglyphs(word: &mut [char]) -> bool {
    let has_latin = word.iter().any(char::is_ascii_alphabetic);
    let letters = word.iter().filter(|c| c.is_alphabetic()).count();
    let foldable = word.iter().filter(|&&c| homoglyph(c).is_some()).count();
    if foldable == 0 || !(has_latin || foldable == letters) {
        return false;
    }
    for c in word.iter_mut() {
        if let Some(l) = homoglyph(*c) {
            *c = l;
        }
    }
    // Folding a word made only of look-alikes (a short Cyrillic word) is not
    // evidence of obfuscation; mixing scripts inside one word is.
    has_latin
}

/// `i.g.n.o.r.e`, `i-g-n-o-r-e`, `i_g_n_o_r_e` (four or more letters) -> `ignore`.
fn join_separated(word: &mut Vec<char>) {
    if word.len() < 7 {
        return;
    }
    let sep = word[1];
    if !matches!(sep, '.' | '-' | '_' | '*' | '/') {
        return;
    }
    let body: &[char] =
        if word.len() & 1 == 0 && word[word.len() - 1] == sep { &word[..word.len() - 1] } else { &word[..] };
    let ok = body.len() & 1 == 1
        && body.iter().enumerate().all(|(i, &c)| if i % 2 == 0 { c.is_alphabetic() } else { c == sep });
    if ok {
        let joined: Vec<char> = body.iter().step_by(2).copied().collect();
        *word = joined;
    }
}
