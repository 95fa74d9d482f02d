//! BERT's uncased WordPiece tokenizer, written out (no `tokenizers` crate):
//! the vocabulary is the `vocab.txt` of all-MiniLM-L6-v2, carried inside the
//! deep-stage weights file.
//!
//! It follows the Hugging Face `tokenizers` package's `BertWordPieceTokenizer`
//! (lowercase, strip accents), which `training/shield/check_tokenizer.py`
//! compares it with: drop NUL, U+FFFD and characters of the categories Cc
//! (except tab, CR, LF), Cf, Cn and Co; spaces around CJK ideographs; NFD and
//! drop non-spacing marks (Mn); lowercase; split on whitespace and on every
//! punctuation character (ASCII punctuation and categories P*). Then greedy
//! longest-match-first WordPiece per word (`##` marks a continuation); a word
//! that cannot be covered, or is longer than 100 characters, becomes `[UNK]`.
//! Not replicated: special tokens written literally in the text (`[CLS]`) are
//! split like any other text.

use std::collections::HashMap;
use unicode_general_category::{get_general_category, GeneralCategory as Gc};
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
            if c == '\0' || c == '\u{fffd}' || is_control(c) {
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
                one.push(c);
                self.word(&one, i, i + c.len_utf8(), &mut f);
                continue;
            }
            if !in_word {
                start = i;
                in_word = true;
            }
            word.push(c);
        }
        if in_word {
            self.word(&word, start, text.len(), &mut f);
        }
    }

    /// WordPiece for one basic token: fold it (accents, case), split off any
    /// punctuation the folding produced, look the pieces up.
    fn word(&self, raw: &str, start: usize, end: usize, f: &mut impl FnMut(Token)) {
        let folded = fold(raw);
        let w = folded.as_str();
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

/// Strip accents (NFD, drop non-spacing marks), then lowercase, in the
/// order of `tokenizers`' BertNormalizer.
fn fold(raw: &str) -> String {
    if raw.is_ascii() {
        return raw.to_ascii_lowercase();
    }
    let stripped: String = raw.nfd().filter(|&c| get_general_category(c) != Gc::NonspacingMark).collect();
    stripped.to_lowercase()
}

/// Characters the cleaning step drops: controls other than tab, CR and LF,
/// format characters, unassigned and private-use code points.
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    matches!(get_general_category(c), Gc::Control | Gc::Format | Gc::Unassigned | Gc::PrivateUse)
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
    matches!(
        get_general_category(c),
        Gc::ConnectorPunctuation
            | Gc::DashPunctuation
            | Gc::OpenPunctuation
            | Gc::ClosePunctuation
            | Gc::InitialPunctuation
            | Gc::FinalPunctuation
            | Gc::OtherPunctuation
    )
}
