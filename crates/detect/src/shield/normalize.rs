//! Normalisation: undo the cheap tricks before anything is scored.
//!
//! Four passes, in this order because each needs what the one before leaves:
//! 1. [`clean`]: drop zero-width, bidi-control and variation-selector characters,
//!    turn Unicode "tag" characters (U+E0020..U+E007E, used to smuggle invisible
//!    ASCII) back into ASCII, then NFKC (full-width, mathematical alphanumerics,
//!    ligatures and other compatibility forms become plain letters). Case is kept,
//!    because base64 is case-sensitive.
//! 2. encoded runs: base64 wrapped over lines is joined first (`join_wrapped`);
//!    a run of base64, hex or space-separated 8-bit binary that decodes to text
//!    is cut out of the main text (a marker word, [`ENC_MARKER`], stands in its
//!    place; see [`main_text`](super::main_text) for when it counts) and
//!    returned as a payload of its own, scored like the original; a token with
//!    three or more `%XX` escapes is URL-decoded in place.
//! 3. [`fold`]: lowercase, fold Cyrillic/Greek look-alikes inside words that
//!    also hold Latin letters (or consist only of look-alikes), fold leetspeak
//!    inside words (`1gn0r3` -> `ignore`), join letters spaced or dotted apart
//!    (`i g n o r e`, `i.g.n.o.r.e`), collapse whitespace to one space.
//! 4. `add_level`: a word whose letters are a rearrangement of an attack
//!    keyword (`ignroe`, `sytsem`) becomes that keyword
//!    ([`unscramble`](super::typo::unscramble)), and the text's other readings
//!    (backwards, ROT13 or upside down, see [`cipher`](super::cipher); accents
//!    folded, see `accent_payload`) are added as payloads of their own.
//!
//! ASCII input skips NFKC and the look-alike table, and NFKC runs only on the
//! whitespace-delimited chunks that need it, so the common case stays fast.

use std::borrow::Cow;
use std::sync::LazyLock;
use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Word that replaces an encoded run whose decoded text is scored separately.
pub const ENC_MARKER: &str = "encpayload";

/// Encoded runs shorter than this are left alone (hashes, ids and words
/// of ordinary length are not worth decoding).
const MIN_ENCODED_RUN: usize = 16;
/// At most this many payloads are decoded from one text (nested ones included).
const MAX_PAYLOADS: usize = 8;
/// Payloads are decoded again at most this deep (base64 inside base64).
const MAX_DEPTH: usize = 2;

/// The result of normalising one text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Normalized {
    /// The folded main text.
    pub text: String,
    /// Folded texts decoded from base64 or hex runs, each scored on its own.
    pub payloads: Vec<String>,
    /// Signals about what normalisation had to undo.
    pub flags: Flags,
}

/// What normalisation found and undid; these feed the classifier too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// Zero-width, bidi-control, variation-selector or tag characters, or
    /// script-neutral combining marks, were present (see `is_invisible`).
    pub invisible: bool,
    /// Look-alike letters or leetspeak were folded inside words.
    pub obfuscated: bool,
}

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

/// The last steps of a level (the main text at depth 0, a decoded payload
/// below it): scrambled attack words folded back, then the text kept and its
/// other readings (backwards, ROT13 or upside down; accents folded) added as
/// payloads of their own. Shared with the reference normaliser.
pub(super) fn add_level(mut text: String, depth: usize, out: &mut Normalized) {
    let words = super::typo::unscramble(&mut text);
    let mut readings = super::cipher::decodings(&text, words);
    readings.extend(accent_payload(&text));
    if depth == 0 {
        out.text = text;
    } else {
        out.payloads.push(text);
    }
    for mut t in readings {
        if out.payloads.len() >= MAX_PAYLOADS {
            break;
        }
        super::typo::unscramble(&mut t);
        out.payloads.push(t);
    }
}

/// Is this a character that renders as nothing (or only changes direction),
/// or a combining mark of the script-neutral blocks, which only decorates the
/// character before it? Those marks are how "Zalgo" and strike-through or
/// underline text generators hide a word from a filter (`i̶g̶n̶o̶r̶e̶`). A
/// precomposed accented letter is one character and stays (`é`); an accent
/// written as a separate mark is dropped with the rest. Marks that belong to
/// a script (Devanagari, Arabic, Hebrew, Thai ...) are outside these blocks
/// and kept.
pub(super) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                      // soft hyphen
        | '\u{0300}'..='\u{036F}'       // combining diacritical marks (and the grapheme joiner)
        | '\u{1AB0}'..='\u{1AFF}'       // combining diacritical marks extended
        | '\u{1DC0}'..='\u{1DFF}'       // combining diacritical marks supplement
        | '\u{20D0}'..='\u{20FF}'       // combining marks for symbols
        | '\u{FE20}'..='\u{FE2F}'       // combining half marks
        | '\u{061C}'                    // arabic letter mark
        | '\u{115F}' | '\u{1160}'       // hangul fillers
        | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'       // mongolian variation selectors, vowel separator
        | '\u{200B}'..='\u{200F}'       // zero-width space/joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}'       // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, bidi isolates
        | '\u{3164}'                    // hangul filler
        | '\u{FE00}'..='\u{FE0F}'       // variation selectors
        | '\u{FEFF}'                    // BOM / zero-width no-break space
        | '\u{FFA0}'
        | '\u{1D173}'..='\u{1D17A}'     // musical formatting
        | '\u{E0000}'..='\u{E001F}'     // tag controls
        | '\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}' // variation selectors supplement
    )
}

fn is_tag(c: char) -> bool {
    ('\u{E0000}'..='\u{E007F}').contains(&c)
}

/// Per-character facts about the Basic Multilingual Plane, read from the
/// Unicode tables once so that the common case needs no table search.
struct BmpTable {
    /// NFKC quick check says Yes and the canonical combining class is 0: in
    /// `is_nfkc_quick` such a character acts like ASCII (it cannot make the
    /// answer No or Maybe, and it resets the combining-class order).
    nfkc_trivial: Vec<u64>,
    /// `char::to_lowercase` gives the character itself.
    lower_same: Vec<u64>,
    /// `char::is_alphabetic`.
    alphabetic: Vec<u64>,
    /// Trivially NFKC (as `nfkc_trivial`) and not invisible: [`clean`] leaves
    /// such a character alone.
    clean_same: Vec<u64>,
    /// [`homoglyph`] has a Latin look-alike for it.
    homoglyph: Vec<u64>,
    /// Not ASCII, not whitespace, lowercase is itself and no look-alike:
    /// [`Folder::fold_word`] leaves such a character as it is.
    fold_same: Vec<u64>,
}

static BMP: LazyLock<BmpTable> = LazyLock::new(|| {
    let mut t = BmpTable {
        nfkc_trivial: vec![0; 1024],
        lower_same: vec![0; 1024],
        alphabetic: vec![0; 1024],
        clean_same: vec![0; 1024],
        homoglyph: vec![0; 1024],
        fold_same: vec![0; 1024],
    };
    for c in (0u32..0x10000).filter_map(char::from_u32) {
        let (word, bit) = ((c as usize) >> 6, 1u64 << (c as u32 & 63));
        if is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes && canonical_combining_class(c) == 0 {
            t.nfkc_trivial[word] |= bit;
            if !is_invisible(c) {
                t.clean_same[word] |= bit;
            }
        }
        let mut lower = c.to_lowercase();
        if lower.next() == Some(c) && lower.next().is_none() {
            t.lower_same[word] |= bit;
        }
        if c.is_alphabetic() {
            t.alphabetic[word] |= bit;
        }
        if homoglyph(c).is_some() {
            t.homoglyph[word] |= bit;
        }
        if !c.is_ascii() && !c.is_whitespace() && t.lower_same[word] & bit != 0 && t.homoglyph[word] & bit == 0 {
            t.fold_same[word] |= bit;
        }
    }
    t
});

fn bmp_bit(bits: &[u64], c: char) -> bool {
    bits.get((c as usize) >> 6).is_some_and(|w| w >> (c as u32 & 63) & 1 == 1)
}

/// `char::is_alphabetic`, from [`BmpTable`] in the BMP (the std lookup
/// searches a table for every non-ASCII character).
fn is_alphabetic(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else if (c as u32) < 0x10000 {
        bmp_bit(&BMP.alphabetic, c)
    } else {
        c.is_alphabetic()
    }
}

/// Build the per-character tables now rather than on the first non-ASCII text.
pub fn warm_up() {
    LazyLock::force(&BMP);
}

/// Pass 1: remove invisibles, decode tag characters, NFKC. Returns whether any
/// invisible or tag character was seen.
///
/// NFKC is applied only to the whitespace-delimited chunks that need it: an
/// ASCII whitespace character is a starter that composes with nothing, so
/// normalising chunk by chunk gives the same result as the whole text.
pub fn clean(input: &str) -> (Cow<'_, str>, bool) {
    let needs = clean_needs(input);
    let Some(first) = needs.nfkc_from else {
        // Nothing to normalise: dropping invisibles (tags become ASCII) cannot change that.
        return if needs.invisible { drop_invisible(input) } else { (Cow::Borrowed(input), false) };
    };
    let (visible, invisible, from) = if needs.invisible {
        let (v, i) = drop_invisible(input);
        (v, i, 0)
    } else {
        (Cow::Borrowed(input), false, first)
    };
    match nfkc_chunks(&visible, from) {
        Some(out) => (Cow::Owned(out), invisible),
        None => (visible, invisible),
    }
}

/// Index of the first byte at or after `i` that is not ASCII, eight bytes at a time.
#[inline]
fn next_non_ascii(b: &[u8], mut i: usize) -> Option<usize> {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        let w = u64::from_le_bytes(a) & HIGH;
        if w != 0 {
            return Some(i + (w.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i.min(b.len())..].iter().position(|&x| x >= 0x80).map(|p| i + p)
}

/// What [`clean`] has to do to a text.
struct CleanNeeds {
    /// Some character is invisible or a tag ([`drop_invisible`] changes the text).
    invisible: bool,
    /// Where the first visible character that is not trivially NFKC starts, if any.
    nfkc_from: Option<usize>,
}

/// Which of [`clean`]'s steps can change the text: one pass over the
/// non-ASCII characters, no copy. Nothing, when every non-ASCII character is
/// in the BMP, visible and trivially NFKC (the common case).
fn clean_needs(s: &str) -> CleanNeeds {
    let b = s.as_bytes();
    let bmp = &*BMP;
    let mut needs = CleanNeeds { invisible: false, nfkc_from: None };
    let mut i = 0;
    while let Some(at) = next_non_ascii(b, i) {
        let c = char_at(s, at);
        if !bmp_bit(&bmp.clean_same, c) {
            if c >= '\u{AD}' && (is_invisible(c) || is_tag(c)) {
                needs.invisible = true;
            } else if needs.nfkc_from.is_none() {
                // Visible and not `clean_same`: not trivially NFKC.
                needs.nfkc_from = Some(at);
            }
            if needs.invisible && needs.nfkc_from.is_some() {
                break;
            }
        }
        i = at + c.len_utf8();
    }
    needs
}

/// The character that starts at byte `i` of `s` (a char boundary).
fn char_at(s: &str, i: usize) -> char {
    s[i..].chars().next().unwrap_or('\0')
}

/// Drop invisible and tag characters, except that tags U+E0020..U+E007E
/// become the ASCII they hide. Copies only when something is dropped.
fn drop_invisible(input: &str) -> (Cow<'_, str>, bool) {
    let b = input.as_bytes();
    let mut out: Option<String> = None;
    let (mut copied, mut i) = (0usize, 0usize);
    while let Some(off) = b[i..].iter().position(|&x| x >= 0x80) {
        i += off;
        let c = char_at(input, i);
        let next = i + c.len_utf8();
        if c >= '\u{AD}' && (is_invisible(c) || is_tag(c)) {
            let o = out.get_or_insert_with(|| String::with_capacity(input.len()));
            o.push_str(&input[copied..i]);
            let cp = c as u32;
            if let Some(a) = (0xE0020..=0xE007E).contains(&cp).then(|| char::from_u32(cp - 0xE0000)).flatten() {
                o.push(a);
            }
            copied = next;
        }
        i = next;
    }
    match out {
        Some(mut o) => {
            o.push_str(&input[copied..]);
            (Cow::Owned(o), true)
        }
        None => (Cow::Borrowed(input), false),
    }
}

/// NFKC on each chunk (split after ASCII whitespace) that is not already NFKC
/// by the quick check; `None` when no chunk needs it. A chunk is only checked
/// when it holds a character that is not trivially NFKC (see [`BmpTable`]);
/// there is none before byte `from`.
fn nfkc_chunks(s: &str, from: usize) -> Option<String> {
    let b = s.as_bytes();
    let n = b.len();
    let trivial = &BMP.nfkc_trivial;
    let mut out: Option<String> = None;
    let (mut copied, mut i) = (0usize, from);
    while let Some(at) = next_non_ascii(b, i) {
        i = at;
        let c = char_at(s, i);
        if bmp_bit(trivial, c) {
            i += c.len_utf8();
            continue;
        }
        // The chunk around `i`: from just after the previous ASCII whitespace
        // to just after the next one (what `split_inclusive` would yield).
        let start = b[..i].iter().rposition(u8::is_ascii_whitespace).map_or(0, |p| p + 1);
        let end = b[i..].iter().position(u8::is_ascii_whitespace).map_or(n, |p| i + p + 1);
        let chunk = &s[start..end];
        if !nfkc_quick_yes(chunk) {
            let o = out.get_or_insert_with(|| String::with_capacity(n + 16));
            o.push_str(&s[copied..start]);
            o.extend(chunk.nfkc().filter(|c| !is_invisible(*c)));
            copied = end;
        }
        i = end;
    }
    out.map(|mut o| {
        o.push_str(&s[copied..]);
        o
    })
}

/// `is_nfkc_quick(s.chars()) == IsNormalized::Yes`, the quick check's own
/// steps, but a character that is trivially NFKC (see
/// [`BmpTable::nfkc_trivial`]) is passed over like ASCII after one table
/// look-up instead of two searches of the crate's tables: in Hindi or Bengali
/// text one virama makes a word's chunk need the check, and nearly every
/// other character in it is trivial.
pub(super) fn nfkc_quick_yes(s: &str) -> bool {
    let trivial = &BMP.nfkc_trivial;
    let mut last_cc = 0u8;
    for c in s.chars() {
        if c.is_ascii() || bmp_bit(trivial, c) {
            last_cc = 0;
            continue;
        }
        let cc = canonical_combining_class(c);
        // Out of canonical order, or not Yes on its own: the whole answer is not Yes.
        if last_cc > cc && cc != 0 || is_nfkc_quick(std::iter::once(c)) != IsNormalized::Yes {
            return false;
        }
        last_cc = cc;
    }
    true
}

/// The base64 alphabet byte by byte ([`C_B64`] is the table the scans use).
pub(super) fn is_b64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=')
}

pub(super) fn b64_value(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => u32::from(b - b'A'),
        b'a'..=b'z' => u32::from(b - b'a') + 26,
        b'0'..=b'9' => u32::from(b - b'0') + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

/// Decode standard or URL-safe base64, padding optional. `None` when a byte is
/// outside the alphabet or the length cannot be base64.
pub fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    let body = match s.iter().position(|&b| b == b'=') {
        Some(p) if s[p..].iter().all(|&b| b == b'=') && s.len() - p <= 2 => &s[..p],
        Some(_) => return None,
        None => s,
    };
    if body.len() & 3 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in body {
        acc = (acc << 6) | b64_value(b)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xFF) as u8);
        }
    }
    Some(out)
}

pub(super) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode a hex string of even length.
pub fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() & 1 != 0 {
        return None;
    }
    s.chunks_exact(2).map(|p| Some(hex_value(p[0])? << 4 | hex_value(p[1])?)).collect()
}

/// Decode RFC 4648 base32 (upper or lower case, padding optional). `None`
/// when a byte is outside the alphabet or the length cannot be base32.
pub fn decode_base32(s: &[u8]) -> Option<Vec<u8>> {
    let body = s.iter().rposition(|&b| b != b'=').map_or(&s[..0], |p| &s[..=p]);
    // 8 characters carry 5 bytes; a final group of 2, 4, 5 or 7 carries 1 to 4.
    if matches!(body.len() % 8, 1 | 3 | 6) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 5 / 8);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in body {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a',
            b'2'..=b'7' => b - b'2' + 26,
            _ => return None,
        };
        acc = acc << 5 | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Decode `%XX` escapes (and `+` as space). `None` if the result is not UTF-8.
pub fn decode_percent(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_value(b[i + 1]), hex_value(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Does decoded data read as text (valid UTF-8, mostly letters and spaces)?
pub(super) fn as_text(bytes: Vec<u8>) -> Option<String> {
    let s = String::from_utf8(bytes).ok()?;
    let mut total = 0usize;
    let mut letters = 0usize;
    let mut bad = 0usize;
    for c in s.chars() {
        total += 1;
        if c.is_alphabetic() || c == ' ' {
            letters += 1;
        } else if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
            bad += 1;
        }
    }
    (total >= 4 && bad == 0 && letters * 10 >= total * 7 && s.contains(' ')).then_some(s)
}

pub(super) fn decode_run(run: &[u8]) -> Option<String> {
    let all_hex = run.iter().all(u8::is_ascii_hexdigit);
    if all_hex {
        if let Some(t) = decode_hex(run).and_then(as_text) {
            return Some(t);
        }
    }
    decode_base64(run).and_then(as_text).or_else(|| decode_base32(run).and_then(as_text))
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

/// Byte classes for the scans below, one bit each.
pub(super) const C_B64: u8 = 1; // base64 alphabet (see `is_b64_byte`)
pub(super) const C_BIN: u8 = 2; // '0' or '1'
const C_LETTER: u8 = 4; // ASCII letter
const C_DIGIT: u8 = 8; // ASCII digit
const C_LEET: u8 = 16; // '@', '$', '!', '|': leet symbols that make a token not plain
const C_SPACE: u8 = 32; // ASCII whitespace as `u8::is_ascii_whitespace` (token separators)
const C_ODD: u8 = 64; // vertical tab or a non-ASCII byte: the token may hold other whitespace

const fn byte_class(b: u8) -> u8 {
    let mut c = 0;
    if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=') {
        c |= C_B64;
    }
    if b == b'0' || b == b'1' {
        c |= C_BIN;
    }
    if b.is_ascii_alphabetic() {
        c |= C_LETTER;
    }
    if b.is_ascii_digit() {
        c |= C_DIGIT;
    }
    if matches!(b, b'@' | b'$' | b'!' | b'|') {
        c |= C_LEET;
    }
    if b.is_ascii_whitespace() {
        c |= C_SPACE;
    }
    if b == 0x0b || b >= 0x80 {
        c |= C_ODD;
    }
    c
}

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = byte_class(i as u8);
        i += 1;
    }
    t
};

/// Bit `j` set where byte `j` of `chunk` (at most 64 bytes) is of class `class`.
#[inline]
fn class_mask(chunk: &[u8], class: u8) -> u64 {
    let mut m = 0u64;
    for (j, &x) in chunk.iter().enumerate() {
        m |= u64::from(CLASS[usize::from(x)] & class != 0) << j;
    }
    m
}

/// Bits `i` of `m` that start `min` consecutive set bits (within the word).
#[inline]
fn run_starts(m: u64, min: usize) -> u64 {
    let (mut y, mut w) = (m, 1);
    while w < min {
        let s = w.min(min - w);
        y &= y >> s;
        w += s;
    }
    y
}

/// The maximal runs of bytes of class `class` at least `min` long, in order
/// (only the first one if `first`). Bytes are classified 64 at a time into a
/// bit mask, without a branch per byte; a block is walked run by run only
/// when a long enough run starts in it, so text without long runs (almost
/// all of it) costs one pass and no mispredicted loop exits.
pub(super) fn long_runs(b: &[u8], class: u8, min: usize, first: bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // Start of the run that reaches the end of the previous block.
    let mut open: Option<usize> = None;
    for (k, chunk) in b.chunks(64).enumerate() {
        let base = 64 * k;
        let mut m = class_mask(chunk, class);
        if let Some(s) = open {
            let t = m.trailing_ones() as usize;
            if t == 64 {
                continue;
            }
            if base + t - s >= min {
                out.push((s, base + t));
                if first {
                    return out;
                }
            }
            open = None;
            // Bits 0..t were that run's; bit t is clear.
            m &= u64::MAX << t;
        }
        // A run reaching the top of a full block may go on in the next one.
        let top = if chunk.len() == 64 { m.leading_ones() } else { 0 };
        let inner = m & u64::MAX.checked_shr(top).unwrap_or(0);
        if run_starts(inner, min) != 0 {
            let mut x = inner;
            while x != 0 {
                let s = x.trailing_zeros();
                let len = (x >> s).trailing_ones();
                if len as usize >= min {
                    out.push((base + s as usize, base + (s + len) as usize));
                    if first {
                        return out;
                    }
                }
                x &= u64::MAX.checked_shl(s + len).unwrap_or(0);
            }
        }
        if top > 0 {
            open = Some(base + 64 - top as usize);
        }
    }
    if let Some(s) = open {
        if b.len() - s >= min {
            out.push((s, b.len()));
        }
    }
    out
}

/// Is there a run of at least `min` consecutive bytes of class `class`? Any
/// such run covers one of the positions `min - 1, 2 * min - 1, ...`, so only
/// those are probed, each by measuring the run around it: cheap for a class
/// that is rare in text (binary digits), not for one that letters belong to
/// (see [`long_runs`]).
fn has_rare_run(b: &[u8], class: u8, min: usize) -> bool {
    let is = |x: &u8| CLASS[usize::from(*x)] & class != 0;
    let mut p = min - 1;
    while p < b.len() {
        if is(&b[p]) {
            let left = b[..p].iter().rev().take(min - 1).take_while(|x| is(x)).count();
            let right = b[p + 1..].iter().take(min - 1 - left).take_while(|x| is(x)).count();
            if left + 1 + right >= min {
                return true;
            }
        }
        p += min;
    }
    false
}

fn candidates(b: &[u8]) -> Candidates {
    Candidates {
        base64_or_hex: !long_runs(b, C_B64, MIN_ENCODED_RUN, true).is_empty(),
        binary: has_rare_run(b, C_BIN, 8),
        percent: count_escapes(b, 3) >= 3,
    }
}

/// Number of `%XX` escapes (both digits inside the text) in `b`, counting up to
/// `max`. Stretches without '%' are skipped with `contains` (a word-at-a-time search).
fn count_escapes(b: &[u8], max: usize) -> usize {
    let mut count = 0;
    for (k, chunk) in b.chunks(64).enumerate() {
        if !chunk.contains(&b'%') {
            continue;
        }
        for (j, _) in chunk.iter().enumerate().filter(|(_, &x)| x == b'%') {
            let i = 64 * k + j;
            if b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
                count += 1;
                if count >= max {
                    return count;
                }
            }
        }
    }
    count
}

/// The length of the line break at `i`: a real one (`\n`, `\r\n`) or one
/// written as a JSON or C escape (`\\n`, `\\r\\n`), as a tool's JSON output
/// carries it; 0 if there is none.
fn line_break_at(b: &[u8], i: usize) -> usize {
    let at = |k: usize, x: &[u8]| b.get(i + k..i + k + x.len()) == Some(x);
    if at(0, b"\n") {
        1
    } else if at(0, b"\r\n") || at(0, b"\\n") {
        2
    } else if at(0, b"\\r\\n") {
        4
    } else {
        0
    }
}

/// Base64 wrapped over lines of equal length (MIME writes 76 characters a
/// line, PEM 64, some APIs 60), with real or escaped line breaks, joined back
/// into one run, so that it decodes as a whole and not as its first line. A
/// block is joined only when it has two lines or more, every line but the last
/// has the first one's length (a multiple of 4, at least [`MIN_ENCODED_RUN`]),
/// and the joined run decodes to text. A run that decodes right after an
/// escaped line break is set apart from the escape's letter by a space.
pub(super) fn join_wrapped(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut out = String::new();
    // `last`: the end of the text copied to `out`; `seen`: the end of the last
    // block followed, joined or not (each line is looked at once)
    let (mut last, mut seen) = (0, 0);
    // only where a line break can start: a newline (or the `\r` before one) or a backslash
    for c in memchr::memchr2_iter(b'\n', b'\\', b) {
        let i = if c > 0 && b[c] == b'\n' && b[c - 1] == b'\r' { c - 1 } else { c };
        let brk = line_break_at(b, i);
        if brk == 0 {
            continue;
        }
        if i < seen {
            continue;
        }
        let mut start = b[seen..i].iter().rposition(|&x| !is_b64_byte(x)).map_or(seen, |p| seen + p + 1);
        if start > 0 && b[start - 1] == b'\\' && b[start] == b'n' {
            start += 1; // the `n` of an escaped line break before the run
        }
        let width = i.saturating_sub(start);
        if width >= MIN_ENCODED_RUN && width % 4 == 0 {
            let (end, joined) = join_block(b, start, i, width);
            seen = end; // its lines are not looked at again, joined or not
            if let Some(lines) = joined {
                out.push_str(&s[last..start]);
                for &(a, e) in &lines {
                    out.push_str(&s[a..e]);
                }
                last = lines.last().map_or(end, |l| l.1);
                continue;
            }
        }
        // an escaped break's letter would join the run after it ("…\\nSGVsbG8…"):
        // a space keeps them apart when that run decodes
        if b[i] == b'\\' && i + brk > last {
            let run = b64_run_len(b, i + brk);
            if run >= MIN_ENCODED_RUN && decode_run(&b[i + brk..i + brk + run]).is_some() {
                out.push_str(&s[last..i + brk]);
                out.push(' ');
                last = i + brk;
                seen = seen.max(last);
            }
        }
    }
    if last == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[last..]);
    Cow::Owned(out)
}

/// The length of the base64 run at `from`.
fn b64_run_len(b: &[u8], from: usize) -> usize {
    b[from..].iter().take_while(|&&c| is_b64_byte(c)).count()
}

/// Follow a wrapped block whose first line is `b[start..i]` (`width` bytes, a
/// line break at `i`): the end of the lines followed, and the lines when they
/// are two or more and decode to text joined.
fn join_block(b: &[u8], start: usize, i: usize, width: usize) -> (usize, Option<Vec<(usize, usize)>>) {
    // follow the lines of that width; one shorter line ends the block
    let (mut j, mut lines) = (i, vec![(start, i)]);
    loop {
        let k = line_break_at(b, j);
        let len = if k == 0 { 0 } else { b64_run_len(b, j + k) };
        if len == 0 || len > width {
            break;
        }
        lines.push((j + k, j + k + len));
        j += k + len;
        if len < width {
            break;
        }
    }
    let join =
        |lines: &[(usize, usize)]| -> Vec<u8> { lines.iter().flat_map(|&(a, e)| b[a..e].iter().copied()).collect() };
    // a short last "line" may be the text after the block ("…\\nThanks"): without it, then
    let end = j;
    if lines.len() < 2 {
        return (end, None);
    }
    if decode_run(&join(&lines)).is_some() {
        return (end, Some(lines));
    }
    if lines.len() > 2 && lines.last().is_some_and(|l| l.1 - l.0 < width) {
        lines.pop();
        if decode_run(&join(&lines)).is_some() {
            return (end, Some(lines));
        }
    }
    (end, None)
}

/// An encoded run cut out of the text: the text before it, then the marker word
/// in its place; its decoded text joins the payloads.
fn cut_out(out: &mut String, before: &str, payloads: &mut Vec<String>, decoded: String) {
    out.push_str(before);
    out.push(' ');
    out.push_str(ENC_MARKER);
    out.push(' ');
    payloads.push(decoded);
}

fn extract_encoded<'a>(s: &'a str, payloads: &mut Vec<String>) -> Cow<'a, str> {
    let c = candidates(s.as_bytes());
    if !(c.base64_or_hex || c.binary || c.percent) {
        return Cow::Borrowed(s);
    }
    let before = payloads.len();
    let binary;
    let t = if c.binary {
        binary = extract_binary(s, payloads);
        binary.as_str()
    } else {
        s
    };
    let b = t.as_bytes();
    let mut out = String::new();
    let mut last = 0usize;
    if c.base64_or_hex {
        for (start, end) in long_runs(b, C_B64, MIN_ENCODED_RUN, false) {
            if payloads.len() >= MAX_PAYLOADS {
                break;
            }
            if let Some(text) = decode_run(&b[start..end]) {
                cut_out(&mut out, &t[last..start], payloads, text);
                last = end;
            }
        }
    }
    // Every cut pushed a payload: none means the text is unchanged, and
    // `c.percent` already counted its escapes.
    if payloads.len() == before {
        return if c.percent { Cow::Owned(percent_tokens(s)) } else { Cow::Borrowed(s) };
    }
    out.push_str(&t[last..]);
    let escapes = out
        .as_bytes()
        .windows(3)
        .filter(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
        .take(3)
        .count();
    if escapes >= 3 {
        out = percent_tokens(&out);
    }
    Cow::Owned(out)
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
                cut_out(&mut out, &s[last..start], payloads, text);
                last = j;
            }
        }
        i = j.max(i + 1);
    }
    out.push_str(&s[last..]);
    out
}

pub(super) fn percent_tokens(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, tok) in s.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let escapes = tok
            .as_bytes()
            .windows(3)
            .filter(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
            .count();
        match (escapes >= 3).then(|| decode_percent(tok)).flatten() {
            Some(d) => out.push_str(&d),
            None => out.push_str(tok),
        }
    }
    out
}

/// Latin look-alike of a (lowercase) Cyrillic, Greek or other confusable letter.
pub(super) fn homoglyph(c: char) -> Option<char> {
    Some(match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' => 'e',
        'к' => 'k',
        'м' => 'm',
        'н' | 'һ' => 'h',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'т' => 't',
        'у' | 'ү' => 'y',
        'х' => 'x',
        'ѕ' => 's',
        'і' | 'ї' => 'i',
        'ј' => 'j',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ӏ' => 'l',
        'ь' => 'b',
        'ɡ' => 'g',
        // Greek
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'γ' => 'y',
        'ω' => 'w',
        'ζ' => 'z',
        // Latin extensions and small capitals
        'ı' => 'i',
        'ȷ' => 'j',
        'ɑ' => 'a',
        'ɩ' => 'i',
        'ᴀ' => 'a',
        'ʙ' => 'b',
        'ᴄ' => 'c',
        'ᴅ' => 'd',
        'ᴇ' => 'e',
        'ɢ' => 'g',
        'ʜ' => 'h',
        'ɪ' => 'i',
        'ᴊ' => 'j',
        'ᴋ' => 'k',
        'ʟ' => 'l',
        'ᴍ' => 'm',
        'ɴ' => 'n',
        'ᴏ' => 'o',
        'ᴘ' => 'p',
        'ʀ' => 'r',
        'ꜱ' => 's',
        'ᴛ' => 't',
        'ᴜ' => 'u',
        'ᴠ' => 'v',
        'ᴡ' => 'w',
        'ʏ' => 'y',
        'ᴢ' => 'z',
        _ => return None,
    })
}

pub(super) fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        '8' => 'b',
        '9' => 'g',
        _ => return None,
    })
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
    // One pass over each token's bytes classifies it: a plain ASCII token (see
    // `plain_ascii_token`, which this must agree with) is copied whole and
    // lowercased in place, any other goes through `Folder::token`. Plain tokens
    // one space apart are copied as one run (`pending`, a range of `s`): the
    // output would join them with one space anyway.
    let b = s.as_bytes();
    let n = b.len();
    let mut i = 0;
    let mut pending: Option<(usize, usize)> = None;
    while i < n {
        if CLASS[usize::from(b[i])] & C_SPACE != 0 {
            i += 1;
            continue;
        }
        let start = i;
        let mut any = 0u8;
        while i < n {
            let c = CLASS[usize::from(b[i])];
            if c & C_SPACE != 0 {
                break;
            }
            any |= c;
            i += 1;
        }
        // Both ends are at ASCII bytes (or the text's ends), so at char boundaries.
        let tok = &s[start..i];
        let tb = tok.as_bytes();
        let single = tb.len() == 1 && any & C_LETTER != 0;
        let separated = tb.len() >= 7 && matches!(tb[1], b'.' | b'-' | b'_' | b'*' | b'/');
        // Letters are counted only for the rare token that mixes them with digits.
        let mixed = any & (C_LETTER | C_DIGIT) == C_LETTER | C_DIGIT
            && tb.iter().filter(|&&x| CLASS[usize::from(x)] & C_LETTER != 0).nth(1).is_some();
        let plain = !(any & (C_ODD | C_LEET) != 0 || single || separated || mixed);
        if plain {
            pending = match pending {
                Some((from, to)) if to + 1 == start && b[to] == b' ' => Some((from, i)),
                Some((from, to)) => {
                    f.plain(&s[from..to]);
                    Some((start, i))
                }
                None => Some((start, i)),
            };
            continue;
        }
        if let Some((from, to)) = pending.take() {
            f.plain(&s[from..to]);
        }
        if tb.len() == 1 && any & C_LETTER != 0 {
            // A single ASCII letter: all `fold_word` would do is queue it.
            f.singles.push(char::from(tb[0].to_ascii_lowercase()));
        } else if any & C_ODD != 0 && folds_to_itself(tok) {
            // A non-Latin word that no folding step changes (and no whitespace
            // inside): copied as it is.
            f.push_unchanged(tok);
        } else if any & C_ODD != 0 && tok.chars().any(char::is_whitespace) {
            for t in tok.split(char::is_whitespace).filter(|t| !t.is_empty()) {
                f.token(t);
            }
        } else {
            // Not plain (see above): straight to the folding steps.
            f.fold_word(tok);
        }
    }
    if let Some((from, to)) = pending {
        f.plain(&s[from..to]);
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
    /// Append a token that [`plain_ascii_token`] accepts (or several, one
    /// space apart): only their case changes.
    #[inline]
    fn plain(&mut self, tok: &str) {
        if !self.singles.is_empty() {
            flush_singles(&mut self.out, &mut self.singles);
        }
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        let at = self.out.len();
        self.out.push_str(tok);
        self.out.as_mut_str()[at..].make_ascii_lowercase();
    }

    fn token(&mut self, tok: &str) {
        // Fast path: a plain ASCII word has nothing to fold but its case.
        if plain_ascii_token(tok.as_bytes()) {
            self.plain(tok);
            return;
        }
        self.fold_word(tok);
    }

    /// What [`Folder::fold_word`] does with a token that [`folds_to_itself`].
    fn push_unchanged(&mut self, tok: &str) {
        if !self.singles.is_empty() {
            flush_singles(&mut self.out, &mut self.singles);
        }
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        self.out.push_str(tok);
    }

    /// [`Folder::token`] for a token known not to be plain.
    fn fold_word(&mut self, tok: &str) {
        let word = &mut self.word;
        word.clear();
        let bmp = &*BMP;
        let lower_same = &bmp.lower_same;
        for c in tok.chars() {
            if c.is_ascii() {
                word.push(c.to_ascii_lowercase());
            } else if bmp_bit(lower_same, c) {
                word.push(c);
            } else if let Some(l) = letter_symbol(c) {
                word.push(l);
                self.obfuscated = true;
            } else {
                word.extend(c.to_lowercase());
            }
        }
        if !self.ascii {
            self.obfuscated |= fold_homoglyphs(bmp, word);
        }
        self.obfuscated |= fold_leet(word);
        join_separated(word);
        if word.len() == 1 && is_alphabetic(word[0]) {
            self.singles.push(word[0]);
            return;
        }
        if !self.singles.is_empty() {
            flush_singles(&mut self.out, &mut self.singles);
        }
        push_word(&mut self.out, word);
    }
}

/// Would [`Folder::fold_word`] emit `tok` unchanged as a word of its own?
/// Yes when it has two characters or more, no ASCII letter (so no leetspeak
/// and no case to fold) and no whitespace, every non-ASCII character is
/// [`BmpTable::fold_same`], and its second character is not a separator that
/// `join_separated` looks for. Most words of non-Latin scripts are such tokens.
fn folds_to_itself(tok: &str) -> bool {
    let fold_same = &BMP.fold_same;
    let mut chars = tok.chars();
    let (Some(_), Some(second)) = (chars.next(), chars.next()) else {
        return false;
    };
    if matches!(second, '.' | '-' | '_' | '*' | '/') {
        return false;
    }
    tok.chars()
        .all(|c| if c.is_ascii() { !(c.is_ascii_alphabetic() || c.is_whitespace()) } else { bmp_bit(fold_same, c) })
}

/// An ASCII token that no folding step would change except for its case: not a
/// single letter (those may be spaced-out words), no leet symbols, not letters
/// mixed with digits, not `x.y.z`-style separated letters.
pub(super) fn plain_ascii_token(tb: &[u8]) -> bool {
    if !tb.is_ascii() || tb.len() == 1 && tb[0].is_ascii_alphabetic() {
        return false;
    }
    let mut letters = 0usize;
    let mut digits = false;
    for &b in tb {
        if b.is_ascii_alphabetic() {
            letters += 1;
        } else if b.is_ascii_digit() {
            digits = true;
        } else if matches!(b, b'@' | b'$' | b'!' | b'|') {
            return false;
        }
    }
    let separated = tb.len() >= 7 && matches!(tb[1], b'.' | b'-' | b'_' | b'*' | b'/');
    !(separated || letters >= 2 && digits)
}

pub(super) fn push_word(out: &mut String, word: &[char]) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.extend(word.iter());
}

pub(super) fn flush_singles(out: &mut String, singles: &mut Vec<char>) {
    if singles.len() >= 4 {
        push_word(out, singles);
    } else {
        for &c in singles.iter() {
            push_word(out, &[c]);
        }
    }
    singles.clear();
}

/// The letter that a negative circled or negative squared letter (`🅘🅖🅝`,
/// `🅸🅶🅽🅾🆁🅴`: U+1F150..U+1F169, U+1F170..U+1F189) stands for, lowercase; NFKC
/// leaves those alone (circled, squared, parenthesised, full-width and
/// mathematical letters are NFKC's). Regional indicators (`🇮🇬🇳`) are not
/// folded: they spell flags in ordinary text, and folding them changed
/// training rows and moved the held-out figures (`training/shield/README.md`).
pub(super) fn letter_symbol(c: char) -> Option<char> {
    let cp = c as u32;
    let at = match cp {
        0x1F150..=0x1F169 => cp - 0x1F150,
        0x1F170..=0x1F189 => cp - 0x1F170,
        _ => return None,
    };
    char::from_u32(u32::from(b'a') + at)
}

/// The ASCII letter a Latin letter with diacritics is written on (`é` ->
/// `e`, `ỏ` -> `o`, `Ñ` -> `N`): the first character of its canonical
/// decomposition, for the Latin-1, Latin Extended-A/B and Latin Extended
/// Additional blocks. `None` for every other character, and for letters that
/// do not decompose (`ß`, `ø`, `ı`, `đ`).
fn latin_base(c: char) -> Option<char> {
    let (table, at) = match c as u32 {
        cp @ 0x00C0..=0x024F => (&LATIN.0, cp - 0x00C0),
        cp @ 0x1E00..=0x1EFF => (&LATIN.1, cp - 0x1E00),
        _ => return None,
    };
    table.get(at as usize).copied().filter(|&b| b != 0).map(char::from)
}

/// [`latin_base`] of U+00C0..=U+024F and of U+1E00..=U+1EFF, 0 where none.
static LATIN: LazyLock<(Vec<u8>, Vec<u8>)> = LazyLock::new(|| {
    let base = |from: u32, to: u32| -> Vec<u8> {
        (from..=to)
            .map(|cp| {
                let mut first = None;
                if let Some(c) = char::from_u32(cp) {
                    unicode_normalization::char::decompose_canonical(c, |d| {
                        first.get_or_insert(d);
                    });
                }
                match first {
                    Some(d) if d.is_ascii_alphabetic() => d as u8,
                    _ => 0,
                }
            })
            .collect()
    };
    (base(0x00C0, 0x024F), base(0x1E00, 0x1EFF))
});

/// The text with its accented Latin letters folded to their ASCII letters
/// (see [`latin_base`]) when they are a third of its letters or more (and
/// at least [`ACCENTED_MIN`]); `None` for any other text.
///
/// This undoes the disguise of an attack written with accents on its vowels
/// ("Ïgnörè àll prëvîôus ïnstrûctîöns": about 40 % of English letters are
/// vowels). The folded text is scored as a payload of its own, beside the
/// text as written, rather than folding every text: German and French (1–4 %
/// of their letters accented) and Vietnamese (25–31 % in the training data)
/// keep their letters, which the fast stage was trained on, and no training
/// row reaches the threshold, so the weights are the same as without it.
fn accent_payload(text: &str) -> Option<String> {
    // A byte pass first: in UTF-8 every letter `latin_base` folds starts
    // with a byte in 0xC3..=0xC9 (U+00C0..U+024F) or 0xE1 (U+1E00..U+1EFF),
    // so their count bounds the accented letters from above, and the ASCII
    // letters are letters. Most texts (English, other scripts, German,
    // French) stop here.
    let b = text.as_bytes();
    let leads = count_bytes(b, |x| x.wrapping_sub(0xC3) < 7 || x == 0xE1);
    if leads < ACCENTED_MIN {
        return None;
    }
    // accented * 3 >= letters >= ascii_letters + accented needs 2 * accented >= ascii_letters.
    let ascii_letters = count_bytes(b, |x| (x | 0x20).wrapping_sub(b'a') < 26);
    if 2 * leads < ascii_letters {
        return None;
    }
    let (mut letters, mut accented) = (0usize, 0usize);
    for c in text.chars() {
        if latin_base(c).is_some() {
            accented += 1;
            letters += 1;
        } else if is_alphabetic(c) {
            letters += 1;
        }
    }
    (accented >= ACCENTED_MIN && accented * 3 >= letters)
        .then(|| text.chars().map(|c| latin_base(c).unwrap_or(c)).collect())
}

/// How many bytes of `b` satisfy `f`: summed in `u8` lanes over blocks of
/// 255 bytes, which the compiler turns into vector code (sixteen bytes and
/// more per instruction), then added up.
#[inline]
pub(super) fn count_bytes(b: &[u8], f: impl Fn(u8) -> bool + Copy) -> usize {
    b.chunks(255).map(|c| usize::from(c.iter().fold(0u8, |n, &x| n + u8::from(f(x))))).sum()
}

/// [`accent_payload`] needs at least this many accented letters.
const ACCENTED_MIN: usize = 4;

fn fold_homoglyphs(bmp: &BmpTable, word: &mut [char]) -> bool {
    // Cheapest test first: most non-Latin words hold no look-alike at all.
    let foldable = word.iter().filter(|&&c| bmp_bit(&bmp.homoglyph, c)).count();
    if foldable == 0 {
        return false;
    }
    let has_latin = word.iter().any(char::is_ascii_alphabetic);
    if !has_latin && foldable != word.iter().filter(|&&c| is_alphabetic(c)).count() {
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

pub(super) fn fold_leet(word: &mut [char]) -> bool {
    let letters = word.iter().filter(|c| c.is_ascii_alphabetic()).count();
    if letters < 2 {
        return false;
    }
    // Leave e-mail addresses, URLs, numbers with units and hashes alone.
    if word.contains(&'@') && word.contains(&'.') || word.windows(3).any(|w| w == [':', '/', '/']) {
        return false;
    }
    if word.iter().any(|&c| c.is_ascii_digit() && leet(c).is_none()) {
        return false;
    }
    let is_l = |c: char| c.is_ascii_alphabetic() || leet(c).is_some();
    let inner = (1..word.len().saturating_sub(1)).any(|i| {
        leet(word[i]).is_some()
            && is_l(word[i - 1])
            && is_l(word[i + 1])
            && (word[i - 1].is_ascii_alphabetic() || word[i + 1].is_ascii_alphabetic())
    });
    if !inner {
        return false;
    }
    let n = word.len();
    for i in 0..n {
        let c = word[i];
        if let Some(l) = leet(c) {
            // Trailing '!' or '|' are punctuation, not letters.
            if matches!(c, '!' | '|') && (i + 1 == n || !is_l(word[i + 1])) {
                continue;
            }
            word[i] = l;
        }
    }
    true
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
        && body.iter().enumerate().all(|(i, &c)| if i % 2 == 0 { is_alphabetic(c) } else { c == sep });
    if ok {
        let joined: Vec<char> = body.iter().step_by(2).copied().collect();
        *word = joined;
    }
}
