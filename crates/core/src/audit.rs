//! The audit chain: entries linked by SHA-256 hashes, and checkpoints that
//! sign the chain head with Ed25519. Pure functions: the store keeps the
//! entries, `keyward audit verify` checks an exported file offline with only
//! the public key.
//!
//! Export format, one JSON object per line:
//! `{"type":"entry","seq":1,"ts":..,"actor":..,"source":..,"action":..,"targets":[..],"summary":{..},"prev_hash":..,"hash":..}`
//! `{"type":"checkpoint","seq":N,"head_hash":..,"ts":..,"signature":..}`

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339 time of the action.
    pub ts: String,
    /// `tok_...:role`, or `system:<component>`.
    pub actor: String,
    /// Source address of the request, when there was one.
    pub source: Option<String>,
    pub action: String,
    /// Ids of what the action touched (`key_...`, `svc_...`); never a secret.
    pub targets: Vec<String>,
    /// What changed; never a secret.
    pub summary: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    ts: &'a str,
    actor: &'a str,
    source: &'a Option<String>,
    action: &'a str,
    targets: &'a [String],
    summary: &'a serde_json::Value,
    prev_hash: &'a str,
}

impl AuditEntry {
    /// The hash of everything but `hash` (serde_json writes struct fields in
    /// order and object keys sorted, so the bytes are canonical).
    pub fn compute_hash(&self) -> String {
        let h = Hashed {
            seq: self.seq,
            ts: &self.ts,
            actor: &self.actor,
            source: &self.source,
            action: &self.action,
            targets: &self.targets,
            summary: &self.summary,
            prev_hash: &self.prev_hash,
        };
        let bytes = serde_json::to_vec(&h).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }

    /// The next entry after `prev` (or the first, when `prev` is None), hashed.
    #[allow(clippy::too_many_arguments)]
    pub fn next(
        prev: Option<&AuditEntry>,
        ts: String,
        actor: String,
        source: Option<String>,
        action: String,
        targets: Vec<String>,
        summary: serde_json::Value,
    ) -> AuditEntry {
        let mut e = AuditEntry {
            seq: prev.map_or(1, |p| p.seq + 1),
            ts,
            actor,
            source,
            action,
            targets,
            summary,
            prev_hash: prev.map_or_else(|| GENESIS.to_string(), |p| p.hash.clone()),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }
}

/// An entry before the store gives it its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub ts: String,
    pub actor: String,
    pub source: Option<String>,
    pub action: String,
    pub targets: Vec<String>,
    pub summary: serde_json::Value,
}

impl AuditDraft {
    /// Chain this draft after `prev` (the head), or start the chain.
    pub fn chain(&self, prev: Option<(u64, &str)>) -> AuditEntry {
        let mut e = AuditEntry {
            seq: prev.map_or(1, |(seq, _)| seq + 1),
            ts: self.ts.clone(),
            actor: self.actor.clone(),
            source: self.source.clone(),
            action: self.action.clone(),
            targets: self.targets.clone(),
            summary: self.summary.clone(),
            prev_hash: prev.map_or_else(|| GENESIS.to_string(), |(_, h)| h.to_string()),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub head_hash: String,
    pub ts: String,
    /// Ed25519 signature (hex) of [`checkpoint_message`].
    pub signature: String,
}

pub fn checkpoint_message(seq: u64, head_hash: &str, ts: &str) -> Vec<u8> {
    format!("keyward-audit-v1\n{seq}\n{head_hash}\n{ts}\n").into_bytes()
}

/// The signing key of an installation, derived from a 32-byte seed.
pub struct Signer(Ed25519KeyPair);

impl Signer {
    pub fn from_seed(seed: &[u8; 32]) -> Option<Signer> {
        Ed25519KeyPair::from_seed_unchecked(seed).ok().map(Signer)
    }
    /// The public key, hex: what `keyward audit pubkey` prints.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.public_key().as_ref())
    }
    pub fn checkpoint(&self, head: &AuditEntry, ts: String) -> Checkpoint {
        let sig = self.0.sign(&checkpoint_message(head.seq, &head.hash, &ts));
        Checkpoint { seq: head.seq, head_hash: head.hash.clone(), ts, signature: hex::encode(sig.as_ref()) }
    }
}

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Entry(AuditEntry),
    Checkpoint(Checkpoint),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub checkpoints: u64,
    /// Entries after the last checkpoint (not yet covered by a signature).
    pub unsigned_tail: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at sequence number {seq}: {reason}")]
pub struct ChainError {
    /// The first bad sequence number.
    pub seq: u64,
    pub reason: String,
}

fn broken(seq: u64, reason: impl Into<String>) -> ChainError {
    ChainError { seq, reason: reason.into() }
}

/// Check a whole exported chain: sequence numbers without gaps from 1, each
/// entry's hash and link, and each checkpoint's signature and head. Detects
/// any edit, deletion, insertion or reordering, and truncation before the
/// last checkpoint.
pub fn verify(lines: &[Line], public_key_hex: &str) -> Result<Verified, ChainError> {
    let pk = hex::decode(public_key_hex.trim()).map_err(|_| broken(0, "the public key is not hex"))?;
    let pk = UnparsedPublicKey::new(&ED25519, pk);
    let mut last: Option<&AuditEntry> = None;
    let (mut entries, mut checkpoints, mut signed_up_to) = (0u64, 0u64, 0u64);
    for line in lines {
        match line {
            Line::Entry(e) => {
                let expected_seq = last.map_or(1, |l| l.seq + 1);
                if e.seq != expected_seq {
                    // the first position that holds something else: a deletion, insertion or move
                    return Err(broken(expected_seq, format!("expected sequence {expected_seq}, found {}", e.seq)));
                }
                let expected_prev = last.map_or(GENESIS, |l| l.hash.as_str());
                if e.prev_hash != expected_prev {
                    return Err(broken(e.seq, "does not link to the previous entry"));
                }
                if e.compute_hash() != e.hash {
                    return Err(broken(e.seq, "content does not match its hash"));
                }
                last = Some(e);
                entries += 1;
            }
            Line::Checkpoint(c) => {
                let Some(head) = last.filter(|l| l.seq == c.seq) else {
                    return Err(broken(c.seq, "checkpoint does not follow the entry it signs"));
                };
                if head.hash != c.head_hash {
                    return Err(broken(c.seq, "checkpoint head does not match the chain"));
                }
                let sig = hex::decode(&c.signature).map_err(|_| broken(c.seq, "checkpoint signature is not hex"))?;
                // one spelling only (lowercase, as written): a line whose bytes changed must not verify
                if hex::encode(&sig) != c.signature {
                    return Err(broken(c.seq, "checkpoint signature is not lowercase hex"));
                }
                pk.verify(&checkpoint_message(c.seq, &c.head_hash, &c.ts), &sig)
                    .map_err(|_| broken(c.seq, "checkpoint signature is invalid"))?;
                checkpoints += 1;
                signed_up_to = c.seq;
            }
        }
    }
    Ok(Verified { entries, checkpoints, unsigned_tail: last.map_or(0, |l| l.seq - signed_up_to) })
}

/// Parse a JSONL export; a malformed line is reported with its line number as `seq`.
pub fn parse_jsonl(text: &str) -> Result<Vec<Line>, ChainError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| broken(0, format!("line {}: {e}", i + 1))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chain(n: usize, every: usize) -> (Vec<Line>, String) {
        let signer = Signer::from_seed(&[7; 32]).unwrap();
        let mut lines = Vec::new();
        let mut prev: Option<AuditEntry> = None;
        for i in 0..n {
            let e = AuditEntry::next(
                prev.as_ref(),
                format!("2026-11-27T12:00:{:02}Z", i % 60),
                "tok_1:owner".into(),
                Some("127.0.0.1".into()),
                "key.create".into(),
                vec![format!("key_{i}")],
                serde_json::json!({"env": "prod", "n": i}),
            );
            lines.push(Line::Entry(e.clone()));
            if (i + 1) % every == 0 {
                lines.push(Line::Checkpoint(signer.checkpoint(&e, "2026-11-27T12:01:00Z".into())));
            }
            prev = Some(e);
        }
        (lines, signer.public_hex())
    }

    #[test]
    fn intact_chain_verifies() {
        let (lines, pk) = chain(10, 5);
        assert_eq!(verify(&lines, &pk).unwrap(), Verified { entries: 10, checkpoints: 2, unsigned_tail: 0 });
        let text: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
        assert_eq!(parse_jsonl(&text).unwrap(), lines);
    }

    #[test]
    fn edits_deletions_insertions_reorderings_are_caught() {
        let (lines, pk) = chain(10, 5);
        let mut edited = lines.clone();
        if let Line::Entry(e) = &mut edited[3] {
            e.summary = serde_json::json!({"env": "dev"});
        }
        assert_eq!(verify(&edited, &pk).unwrap_err().seq, 4);
        let mut deleted = lines.clone();
        deleted.remove(2);
        assert_eq!(verify(&deleted, &pk).unwrap_err().seq, 3);
        let mut reordered = lines.clone();
        reordered.swap(1, 2);
        assert_eq!(verify(&reordered, &pk).unwrap_err().seq, 2);
        let mut inserted = lines.clone();
        let extra = inserted[1].clone();
        inserted.insert(2, extra);
        assert!(verify(&inserted, &pk).is_err());
        // truncation before a checkpoint: the checkpoint has no entry to sign
        let mut truncated = lines.clone();
        truncated.remove(4);
        assert_eq!(verify(&truncated, &pk).unwrap_err().seq, 5);
        // another key's signature
        let other = Signer::from_seed(&[8; 32]).unwrap().public_hex();
        assert_eq!(verify(&lines, &other).unwrap_err().seq, 5);
        // a rewritten, re-hashed chain still fails at the signed checkpoint
        let mut forged = lines.clone();
        if let Line::Entry(e) = &mut forged[0] {
            e.action = "nothing".into();
            e.hash = e.compute_hash();
        }
        assert_eq!(verify(&forged, &pk).unwrap_err().seq, 2);
    }

    #[test]
    fn unsigned_tail_is_reported() {
        let (lines, pk) = chain(7, 5);
        assert_eq!(verify(&lines, &pk).unwrap().unsigned_tail, 2);
    }

    proptest! {
        #[test]
        fn any_single_byte_change_fails(n in 1usize..12, pick in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let (lines, pk) = chain(n, 3);
            let text: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
            let mut bytes = text.into_bytes();
            let i = pick.index(bytes.len());
            prop_assume!(bytes[i] != byte && bytes[i] != b'\n');
            bytes[i] = byte;
            let changed = String::from_utf8_lossy(&bytes).to_string();
            // either the line no longer parses, or the chain no longer verifies,
            // or the change was to JSON whitespace/escaping that leaves the values equal
            match parse_jsonl(&changed) {
                Err(_) => {}
                Ok(parsed) if parsed == lines => {}
                Ok(parsed) => prop_assert!(verify(&parsed, &pk).is_err() || parsed.len() != lines.len()),
            }
        }
    }
}
