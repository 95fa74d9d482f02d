//! Scores of parts a key has sent before. A conversation resends its whole
//! history with every turn, and an agent resends its documents and tool
//! results, so without a memory the shield would screen the same text again on
//! every request: a long conversation's screening cost grows with the square of
//! its length. A part's score depends only on its text and the deep mode (the
//! threshold is applied afterwards), so a remembered score is the score.
//!
//! Entries are scoped to the virtual key: what one key sent is never a hit for
//! another, so a response's timing tells nobody what other keys sent. An entry
//! is named by a salted SHA-256 of (key, mode, text), the salt random per
//! process, so nobody can make two texts share an entry; no text is kept.
//!
//! Eviction is by two generations: new entries go to the young map, a hit in
//! the old map moves the entry to the young one, and when the young map is full
//! it becomes the old one (the old one is dropped). Lookups and inserts take a
//! lock for a hash-map operation; scoring happens outside it.

use keyward_detect::shield::DeepMode;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Parts shorter than this are scored every time: the fast stage takes a few
/// microseconds on them, about what naming the entry and taking the lock cost.
pub const MIN_CACHED_BYTES: usize = 256;

/// Remembered scores for every key of the process.
pub struct ScoreCache {
    /// SHA-256 state after the per-process salt.
    salted: Sha256,
    /// Entries per generation; 0 turns the cache off.
    half: usize,
    maps: Mutex<Generations>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Generations {
    young: keyward_core::FastMap<u128, f32>,
    old: keyward_core::FastMap<u128, f32>,
}

impl std::fmt::Debug for ScoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreCache").field("entries", &(self.half * 2)).finish_non_exhaustive()
    }
}

impl ScoreCache {
    /// A cache of at most `entries` scores (0: remember nothing).
    pub fn new(entries: usize) -> Self {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        ScoreCache {
            salted: Sha256::new_with_prefix(salt),
            half: entries / 2,
            maps: Mutex::new(Generations::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The score of `text` for key `key` in `mode`: remembered, or computed by
    /// `score` (outside the lock) and remembered.
    pub fn score(&self, key: &str, mode: DeepMode, text: &str, score: impl FnOnce() -> f32) -> f32 {
        if self.half == 0 || text.len() < MIN_CACHED_BYTES {
            return score();
        }
        let id = self.entry_id(key, mode, text);
        if let Some(s) = self.get(id) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return s;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let s = score();
        self.put(id, s);
        s
    }

    /// (hits, misses) since start, over parts long enough to be remembered.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    fn entry_id(&self, key: &str, mode: DeepMode, text: &str) -> u128 {
        let mut h = self.salted.clone();
        // lengths first, so no two (key, text) pairs hash the same bytes
        h.update((key.len() as u64).to_le_bytes());
        h.update(key.as_bytes());
        h.update([mode as u8]);
        h.update(text.as_bytes());
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        u128::from_le_bytes(id)
    }

    fn get(&self, id: u128) -> Option<f32> {
        let mut g = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = g.young.get(&id) {
            return Some(*s);
        }
        let s = g.old.remove(&id)?;
        self.insert(&mut g, id, s);
        Some(s)
    }

    fn put(&self, id: u128, s: f32) {
        let mut g = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        self.insert(&mut g, id, s);
    }

    fn insert(&self, g: &mut Generations, id: u128, s: f32) {
        if g.young.len() >= self.half {
            g.old = std::mem::take(&mut g.young);
        }
        g.young.insert(id, s);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        g.young.len() + g.old.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::cell::Cell;

    fn long(tag: &str) -> String {
        format!("{tag} {}", "a part long enough to be remembered. ".repeat(10))
    }

    /// Score through the cache, counting how often the scorer ran.
    fn through(c: &ScoreCache, key: &str, mode: DeepMode, text: &str, runs: &Cell<u32>) -> f32 {
        c.score(key, mode, text, || {
            runs.set(runs.get() + 1);
            text.len() as f32
        })
    }

    #[test]
    fn a_part_is_scored_once_per_key_and_mode() {
        let c = ScoreCache::new(64);
        let runs = Cell::new(0);
        let t = long("x");
        assert_eq!(through(&c, "k1", DeepMode::Off, &t, &runs), t.len() as f32);
        assert_eq!(through(&c, "k1", DeepMode::Off, &t, &runs), t.len() as f32);
        assert_eq!(runs.get(), 1);
        // another key, another mode, another text: scored again
        through(&c, "k2", DeepMode::Off, &t, &runs);
        through(&c, "k1", DeepMode::On, &t, &runs);
        through(&c, "k1", DeepMode::Off, &long("y"), &runs);
        assert_eq!(runs.get(), 4);
        assert_eq!(c.stats(), (1, 4));
    }

    #[test]
    fn short_parts_and_a_zero_size_are_never_remembered() {
        let runs = Cell::new(0);
        let c = ScoreCache::new(64);
        let short = "x".repeat(MIN_CACHED_BYTES - 1);
        through(&c, "k", DeepMode::Off, &short, &runs);
        through(&c, "k", DeepMode::Off, &short, &runs);
        let off = ScoreCache::new(0);
        through(&off, "k", DeepMode::Off, &long("x"), &runs);
        through(&off, "k", DeepMode::Off, &long("x"), &runs);
        assert_eq!(runs.get(), 4);
        assert_eq!((c.len(), off.len()), (0, 0));
    }

    #[test]
    fn the_key_and_the_text_cannot_be_traded_for_each_other() {
        // without the length prefix, ("ab", "c…") and ("a", "bc…") would hash the same bytes
        let c = ScoreCache::new(64);
        let t = long("c");
        assert_ne!(c.entry_id("ab", DeepMode::Off, &t), c.entry_id("a", DeepMode::Off, &format!("b{t}")));
        // and another process (another salt) names the same part differently
        assert_ne!(c.entry_id("k", DeepMode::Off, &t), ScoreCache::new(64).entry_id("k", DeepMode::Off, &t));
    }

    #[test]
    fn size_is_bounded_and_recent_entries_survive() {
        let c = ScoreCache::new(8);
        let runs = Cell::new(0);
        let keep = long("keep");
        through(&c, "k", DeepMode::Off, &keep, &runs);
        for i in 0..100 {
            through(&c, "k", DeepMode::Off, &long(&i.to_string()), &runs);
            // the part in use is found every time and so never ages out
            through(&c, "k", DeepMode::Off, &keep, &runs);
            assert!(c.len() <= 8, "{} entries", c.len());
        }
        assert_eq!(runs.get(), 101);
        // the oldest of the others are gone
        through(&c, "k", DeepMode::Off, &long("0"), &runs);
        assert_eq!(runs.get(), 102);
    }
}
