//! BERT's uncased WordPiece tokenizer, written out (no `tokenizers` crate):
//! the vocabulary is the `vocab.txt` of all-MiniLM-L6-v2, carried inside the
//! deep-stage weights file.
//!
//! Basic tokenisation as `BertTokenizer(do_lower_case=True)`: drop NUL, U+FFFD
//! and control characters, whitespace to a space, spaces around CJK
//! ideographs, split on whitespace, lowercase, strip accents (NFD, drop
//! combining marks), split off every punctuation character. Then greedy
//! longest-match-first WordPiece per word (`##` marks a continuation); a word
//! that cannot be covered, or is longer than 100 characters, becomes `[UNK]`.
//!
//! One approximation: Unicode's punctuation category (P*) is not tabled here;
//! ASCII punctuation and the common punctuation blocks are (general
//! punctuation, CJK symbols and punctuation, Latin-1 punctuation). Training
//! and serving use this same code, so the model sees what it was trained on.

use std::collections::HashMap;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

const MAX_WORD_CHARS: usize = 100;

/// Why a vocabulary was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VocabError {
    #[error("vocabulary has no `{0}` entry")]
    Missing(&'static str),
    #[error("vocabulary is empty or too large")]
    Size,
}

/// A WordPiece vocabulary and the tokenizer over it.
#[derive(Clone)]
pub struct WordPiece {
    /// Whole-word pieces (no `##`).
    words: HashMap<Box<str>, u32>,
    /// Continuation pieces, keyed without their `##`.
    subwords: HashMap<Box<str>, u32>,
    tokens: Vec<Box<str>>,
    unk: u32,
}

impl std::fmt::Debug for WordPiece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordPiece").field("tokens", &self.tokens.len()).finish_non_exhaustive()
    }
}

/// One token: its id and the byte range of the word it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub id: u32,
    pub start: usize,
    pub end: usize,
}

impl WordPiece {
    /// From the text of a `vocab.txt` (one token per line, in id order).
    pub fn from_vocab(text: &str) -> Result<Self, VocabError> {
        let tokens: Vec<Box<str>> = text.lines().map(Box::from).collect();
        if tokens.is_empty() || tokens.len() > u32::MAX as usize {
            return Err(VocabError::Size);
        }
        let mut words = HashMap::with_capacity(tokens.len());
        let mut subwords = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            let id = i as u32;
            match t.strip_prefix("##") {
                Some(rest) if !rest.is_empty() => {
                    subwords.entry(Box::from(rest)).or_insert(id);
                }
                _ => {
                    words.entry(t.clone()).or_insert(id);
                }
            }
        }
        let unk = *words.get("[UNK]").ok_or(VocabError::Missing("[UNK]"))?;
        Ok(WordPiece { words, subwords, tokens, unk })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of a whole-word token (e.g. `[CLS]`).
    pub fn id(&self, token: &str) -> Option<u32> {
        self.words.get(token).copied()
    }

    /// The text of token `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|t| &**t)
    }

    /// Token ids of `text` (no `[CLS]`/`[SEP]`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.tokenize(text, |t| out.push(t.id));
        out
    }

    /// Call `f` with every token of `text`, in order.
    pub fn tokenize(&self, text: &str, mut f: impl FnMut(Token)) {
        let mut word = String::new();
        let mut start = 0;
        let mut in_word = false;
        for (i, c) in text.char_indices() {
            if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) || is_format(c) {
                continue;
            }
            if c.is_whitespace() {
                if in_word {
                    self.word(&word, start, i, &mut f);
                    word.clear();
                    in_word = false;
                }
                continue;
            }
            if is_cjk(c) || is_punctuation(c) {
                if in_word {
                    self.word(&word, start, i, &mut f);
                    word.clear();
                    in_word = false;
                }
                let mut one = String::new();
                push_folded(&mut one, c);
                self.word(&one, i, i + c.len_utf8(), &mut f);
                continue;
            }
            if !in_word {
                start = i;
                in_word = true;
            }
            push_folded(&mut word, c);
        }
        if in_word {
            self.word(&word, start, text.len(), &mut f);
        }
    }

    /// WordPiece for one basic token (already lowercased and accent-stripped;
    /// punctuation produced by the folding is split off here).
    fn word(&self, w: &str, start: usize, end: usize, f: &mut impl FnMut(Token)) {
        // Folding (e.g. NFD of a compatibility character) can produce punctuation.
        if w.chars().count() > 1 && w.chars().any(is_punctuation) {
            let mut cur = String::new();
            for c in w.chars() {
                if is_punctuation(c) {
                    if !cur.is_empty() {
                        self.pieces(&cur, start, end, f);
                        cur.clear();
                    }
                    self.pieces(c.encode_utf8(&mut [0; 4]), start, end, f);
                } else {
                    cur.push(c);
                }
            }
            if !cur.is_empty() {
                self.pieces(&cur, start, end, f);
            }
        } else if !w.is_empty() {
            self.pieces(w, start, end, f);
        }
    }

    fn pieces(&self, w: &str, start: usize, end: usize, f: &mut impl FnMut(Token)) {
        let unk = Token { id: self.unk, start, end };
        if w.chars().count() > MAX_WORD_CHARS {
            f(unk);
            return;
        }
        // Greedy longest match; collect first, since a failure anywhere makes the whole word [UNK].
        let mut ids: Vec<u32> = Vec::new();
        let mut at = 0;
        while at < w.len() {
            let mut stop = w.len();
            let mut found = None;
            while stop > at {
                if w.is_char_boundary(stop) {
                    let piece = &w[at..stop];
                    let hit = if at == 0 { self.words.get(piece) } else { self.subwords.get(piece) };
                    if let Some(&id) = hit {
                        found = Some(id);
                        break;
                    }
                }
                stop -= 1;
            }
            match found {
                Some(id) => {
                    ids.push(id);
                    at = stop;
                }
                None => {
                    f(unk);
                    return;
                }
            }
        }
        for id in ids {
            f(Token { id, start, end });
        }
    }
}

/// Lowercase, then NFD without combining marks (BERT's accent stripping).
fn push_folded(out: &mut String, c: char) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    for l in c.to_lowercase() {
        for d in std::iter::once(l).nfd() {
            if !is_combining_mark(d) {
                out.push(d);
            }
        }
    }
}

/// Format characters (Unicode Cf) that BERT's cleaning drops with the controls.
fn is_format(c: char) -> bool {
    matches!(c as u32, 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE0001 | 0xE0020..=0xE007F)
}

/// The CJK ideograph blocks BERT isolates (not Hangul, kana or other CJK scripts).
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(c as u32,
        0xA1 | 0xA7 | 0xAB | 0xB6 | 0xB7 | 0xBB | 0xBF
        | 0x37E | 0x387
        | 0x55A..=0x55F | 0x589 | 0x58A
        | 0x5BE | 0x5C0 | 0x5C3 | 0x5C6 | 0x5F3 | 0x5F4
        | 0x609 | 0x60A | 0x60C | 0x60D | 0x61B | 0x61E | 0x61F | 0x66A..=0x66D | 0x6D4
        | 0x964 | 0x965 | 0x970
        | 0x2010..=0x2027
        | 0x2030..=0x2043
        | 0x2045..=0x2051
        | 0x2053..=0x205E
        | 0x207D | 0x207E | 0x208D | 0x208E
        | 0x2308..=0x230B | 0x2329 | 0x232A
        | 0x2768..=0x2775
        | 0x27C5 | 0x27C6 | 0x27E6..=0x27EF
        | 0x2983..=0x2998 | 0x29D8..=0x29DB | 0x29FC | 0x29FD
        | 0x2E00..=0x2E4F
        | 0x3001..=0x3003 | 0x3008..=0x3011 | 0x3014..=0x301F | 0x3030 | 0x303D | 0x30A0 | 0x30FB
        | 0xFE10..=0xFE19 | 0xFE30..=0xFE52 | 0xFE54..=0xFE61 | 0xFE63 | 0xFE68 | 0xFE6A | 0xFE6B
        | 0xFF01..=0xFF03 | 0xFF05..=0xFF0A | 0xFF0C..=0xFF0F | 0xFF1A | 0xFF1B | 0xFF1F | 0xFF20
        | 0xFF3B..=0xFF3D | 0xFF3F | 0xFF5B | 0xFF5D | 0xFF5F..=0xFF65)
}
