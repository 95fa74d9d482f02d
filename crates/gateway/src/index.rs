//! The in-memory indexes the request path reads: keys by digest, admin tokens
//! by digest, upstream credentials by environment.
//!
//! The admin API writes the store first, then updates these maps, so a revoked
//! key is refused from the next request on with no database round trip.

use crate::limits::{Bucket, Concurrency, Spend};
use keyward_core::crypto::KeyDigest;
use keyward_core::policy::{Cidr, KeyPolicy};
use keyward_core::Environment;
use keyward_core::FastMap;
use keyward_secrets::CacheEntry;
use keyward_store::KeyStatus;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// A key's policy with the environment defaults applied and networks parsed.
#[derive(Debug, Clone, Default)]
pub struct Effective {
    pub policy: KeyPolicy,
    pub cidrs: Vec<Cidr>,
    pub log_request_metadata: bool,
    /// Screening, pinning, guard instruction, spotlighting; `None`: the body is forwarded as received.
    pub request_plan: Option<Arc<crate::shield::RequestPlan>>,
    /// Tool allowlist and argument rules; `None`: responses pass through untouched.
    pub tool_gate: Option<Arc<crate::shield::ToolGate>>,
}

/// What the request path knows about a virtual key.
#[derive(Debug)]
pub struct KeyEntry {
    pub id: String,
    pub service_id: String,
    pub service_name: String,
    pub env: Environment,
    status: AtomicU8,
    /// `i64::MAX` when the key never expires.
    expires_at_ms: AtomicI64,
    /// Until when the rotated-out secret still works (`i64::MIN`: none).
    prev_valid_until_ms: AtomicI64,
    policy: RwLock<Arc<Effective>>,
    /// Shield actions: requests flagged, requests blocked, tool calls flagged, tool calls blocked.
    pub shield: [AtomicU64; 4],
    /// When the current secret was issued (rotation or creation), Unix ms; 0 unknown.
    rotated_at_ms: AtomicI64,
    pub rpm: Bucket,
    pub tpm: Bucket,
    pub inflight: Concurrency,
    pub spend: Spend,
    /// Presentations of stale secrets not yet written to the store: (count, last ms).
    stale: Mutex<(i64, i64)>,
}

const ACTIVE: u8 = 0;
const SUSPENDED: u8 = 1;
const REVOKED: u8 = 2;

impl KeyEntry {
    pub fn new(id: String, service_id: String, service_name: String, env: Environment, status: KeyStatus) -> Self {
        let e = KeyEntry {
            id,
            service_id,
            service_name,
            env,
            status: AtomicU8::new(REVOKED),
            expires_at_ms: AtomicI64::new(i64::MAX),
            prev_valid_until_ms: AtomicI64::new(i64::MIN),
            policy: RwLock::new(Arc::new(Effective::default())),
            shield: Default::default(),
            rotated_at_ms: AtomicI64::new(0),
            rpm: Bucket::default(),
            tpm: Bucket::default(),
            inflight: Concurrency::default(),
            spend: Spend::default(),
            stale: Mutex::new((0, 0)),
        };
        e.set_status(status);
        e
    }
    pub fn status(&self) -> KeyStatus {
        match self.status.load(Ordering::Acquire) {
            ACTIVE => KeyStatus::Active,
            SUSPENDED => KeyStatus::Suspended,
            _ => KeyStatus::Revoked,
        }
    }
    pub fn set_status(&self, s: KeyStatus) {
        let v = match s {
            KeyStatus::Active => ACTIVE,
            KeyStatus::Suspended => SUSPENDED,
            KeyStatus::Revoked => REVOKED,
        };
        self.status.store(v, Ordering::Release);
    }
    pub fn set_expiry(&self, at_ms: Option<i64>) {
        self.expires_at_ms.store(at_ms.unwrap_or(i64::MAX), Ordering::Release);
    }
    pub fn expires_at_ms(&self) -> Option<i64> {
        let v = self.expires_at_ms.load(Ordering::Acquire);
        (v != i64::MAX).then_some(v)
    }
    pub fn set_rotated(&self, at_ms: i64) {
        self.rotated_at_ms.store(at_ms, Ordering::Release);
    }
    pub fn last_rotated_ms(&self) -> i64 {
        self.rotated_at_ms.load(Ordering::Acquire)
    }
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at_ms.load(Ordering::Acquire)
    }
    pub fn set_prev_valid_until(&self, at_ms: Option<i64>) {
        self.prev_valid_until_ms.store(at_ms.unwrap_or(i64::MIN), Ordering::Release);
    }
    pub fn set_policy(&self, p: Arc<Effective>) {
        *write(&self.policy) = p;
    }
    pub fn policy(&self) -> Arc<Effective> {
        read(&self.policy).clone()
    }
    /// Note that a stale (revoked, suspended, expired, rotated-out) secret of this key was presented.
    pub fn note_stale(&self, now_ms: i64) {
        let mut s = self.stale.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.1 = now_ms;
    }
    pub fn peek_stale(&self) -> i64 {
        self.stale.lock().unwrap_or_else(|p| p.into_inner()).0
    }
    /// Take the pending stale-presentation count (for the store).
    pub fn take_stale(&self) -> Option<(i64, i64)> {
        let mut s = self.stale.lock().unwrap_or_else(|p| p.into_inner());
        (s.0 > 0).then(|| std::mem::take(&mut *s))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Current,
    /// The rotated-out secret, valid until the key's grace window ends.
    Previous,
    /// A secret that no longer works; presenting it is counted.
    Retired,
}

pub enum Auth {
    Ok(Arc<KeyEntry>),
    /// A known secret that does not work now (revoked, suspended, expired, rotated out).
    Stale(Arc<KeyEntry>),
    Unknown,
}

#[derive(Default)]
pub struct KeyIndex {
    by_digest: RwLock<FastMap<KeyDigest, (Arc<KeyEntry>, Slot)>>,
    by_id: RwLock<FastMap<String, Arc<KeyEntry>>>,
}

impl KeyIndex {
    /// Add a key (or replace its entry) with its current digest.
    pub fn insert(&self, digest: KeyDigest, e: KeyEntry) -> Arc<KeyEntry> {
        let e = Arc::new(e);
        write(&self.by_id).insert(e.id.clone(), e.clone());
        write(&self.by_digest).insert(digest, (e.clone(), Slot::Current));
        e
    }

    pub fn set_slot(&self, digest: KeyDigest, e: &Arc<KeyEntry>, slot: Slot) {
        write(&self.by_digest).insert(digest, (e.clone(), slot));
    }

    /// The key whose digest is `d`. The map is keyed by the digest (never by
    /// the secret) and the match is re-checked in constant time.
    pub fn authenticate(&self, d: &KeyDigest, now_ms: i64) -> Auth {
        let map = read(&self.by_digest);
        let Some((stored, (e, slot))) = map.get_key_value(d) else { return Auth::Unknown };
        if !stored.ct_eq(d) {
            return Auth::Unknown;
        }
        let live = e.status() == KeyStatus::Active
            && now_ms < e.expires_at_ms.load(Ordering::Acquire)
            && match slot {
                Slot::Current => true,
                Slot::Previous => now_ms < e.prev_valid_until_ms.load(Ordering::Acquire),
                Slot::Retired => false,
            };
        if live {
            Auth::Ok(e.clone())
        } else {
            Auth::Stale(e.clone())
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<KeyEntry>> {
        read(&self.by_id).get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<KeyEntry>> {
        read(&self.by_id).values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        read(&self.by_id).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An admin token as the admin plane knows it.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    pub id: String,
    pub role: String,
    pub services: Vec<String>,
    pub expires_at_ms: Option<i64>,
}

#[derive(Default)]
pub struct TokenIndex {
    by_digest: RwLock<FastMap<KeyDigest, Arc<TokenEntry>>>,
    /// Last use per token id since the last flush to the store.
    used: std::sync::Mutex<HashMap<String, i64>>,
}

impl TokenIndex {
    pub fn touch(&self, id: &str, now_ms: i64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        match used.get_mut(id) {
            Some(t) => *t = (*t).max(now_ms),
            None => {
                used.insert(id.to_string(), now_ms);
            }
        }
    }
    pub fn take_used(&self) -> Vec<(String, i64)> {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).drain().collect()
    }
    pub fn insert(&self, d: KeyDigest, t: TokenEntry) {
        write(&self.by_digest).insert(d, Arc::new(t));
    }
    pub fn remove_id(&self, id: &str) -> bool {
        let mut map = write(&self.by_digest);
        let before = map.len();
        map.retain(|_, t| t.id != id);
        map.len() != before
    }
    pub fn authenticate(&self, d: &KeyDigest, now_ms: i64) -> Option<Arc<TokenEntry>> {
        let map = read(&self.by_digest);
        let (stored, t) = map.get_key_value(d)?;
        let live = t.expires_at_ms.is_none_or(|exp| now_ms < exp);
        (stored.ct_eq(d) && live).then(|| t.clone())
    }
}

/// The upstream credential a request of an environment uses.
pub struct UpstreamEntry {
    pub id: String,
    pub name: String,
    pub secret: Arc<CacheEntry>,
    /// The rotated-out credential, kept loaded until its grace window ends:
    /// used if the current one cannot be fetched.
    pub previous: Option<(Arc<CacheEntry>, i64)>,
}

#[derive(Default)]
pub struct UpstreamIndex {
    by_env: RwLock<FastMap<Environment, Arc<UpstreamEntry>>>,
}

impl UpstreamIndex {
    pub fn set(&self, env: Environment, u: UpstreamEntry) {
        write(&self.by_env).insert(env, Arc::new(u));
    }
    pub fn remove(&self, env: Environment, id: &str) {
        let mut m = write(&self.by_env);
        if m.get(&env).is_some_and(|u| u.id == id) {
            m.remove(&env);
        }
    }
    pub fn get(&self, env: Environment) -> Option<Arc<UpstreamEntry>> {
        read(&self.by_env).get(&env).cloned()
    }
    pub fn all(&self) -> Vec<(Environment, Arc<UpstreamEntry>)> {
        read(&self.by_env).iter().map(|(e, u)| (*e, u.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: KeyStatus) -> KeyEntry {
        KeyEntry::new("key_1".into(), "svc_1".into(), "a".into(), Environment::Dev, status)
    }

    #[test]
    fn revocation_suspension_and_expiry_take_effect_in_place() {
        let idx = KeyIndex::default();
        let d = KeyDigest([7; 32]);
        let e = idx.insert(d, entry(KeyStatus::Active));
        assert!(matches!(idx.authenticate(&d, 0), Auth::Ok(_)));
        e.set_status(KeyStatus::Suspended);
        assert!(matches!(idx.authenticate(&d, 0), Auth::Stale(_)));
        e.set_status(KeyStatus::Active);
        e.set_expiry(Some(100));
        assert!(matches!(idx.authenticate(&d, 99), Auth::Ok(_)));
        assert!(matches!(idx.authenticate(&d, 100), Auth::Stale(_)), "refused at the moment of expiry");
        e.set_expiry(None);
        e.set_status(KeyStatus::Revoked);
        assert!(matches!(idx.authenticate(&d, 0), Auth::Stale(_)));
        assert!(matches!(idx.authenticate(&KeyDigest([8; 32]), 0), Auth::Unknown));
    }

    #[test]
    fn previous_secret_works_only_in_its_window() {
        let idx = KeyIndex::default();
        let (old, new) = (KeyDigest([1; 32]), KeyDigest([2; 32]));
        let e = idx.insert(old, entry(KeyStatus::Active));
        idx.set_slot(new, &e, Slot::Current);
        idx.set_slot(old, &e, Slot::Previous);
        e.set_prev_valid_until(Some(1_000));
        assert!(matches!(idx.authenticate(&old, 999), Auth::Ok(_)));
        assert!(matches!(idx.authenticate(&old, 1_000), Auth::Stale(_)));
        assert!(matches!(idx.authenticate(&new, 5_000), Auth::Ok(_)));
        idx.set_slot(old, &e, Slot::Retired);
        assert!(matches!(idx.authenticate(&old, 0), Auth::Stale(_)));
        e.note_stale(5);
        e.note_stale(9);
        assert_eq!(e.take_stale(), Some((2, 9)));
        assert_eq!(e.take_stale(), None);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let idx = TokenIndex::default();
        let d = KeyDigest([1; 32]);
        idx.insert(
            d,
            TokenEntry { id: "tok_1".into(), role: "owner".into(), services: vec![], expires_at_ms: Some(100) },
        );
        assert!(idx.authenticate(&d, 99).is_some());
        assert!(idx.authenticate(&d, 100).is_none());
        assert!(idx.remove_id("tok_1"));
        assert!(idx.authenticate(&d, 0).is_none());
    }
}
