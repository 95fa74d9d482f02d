//! The in-memory indexes the request path reads: keys by digest, admin tokens
//! by digest, upstream credentials by environment.
//!
//! The admin API writes the store first, then updates these maps, so a revoked
//! key is refused from the next request on with no database round trip.

use keyward_core::crypto::KeyDigest;
use keyward_core::Environment;
use keyward_secrets::CacheEntry;
use keyward_store::KeyStatus;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// What the request path knows about a virtual key.
#[derive(Debug)]
pub struct KeyEntry {
    pub id: String,
    pub service_id: String,
    pub service_name: String,
    pub env: Environment,
    status: AtomicU8,
    /// Responses by status class: 2xx, 4xx, 5xx (other classes count as 5xx).
    pub responses: [AtomicU64; 3],
}

const ACTIVE: u8 = 0;
const SUSPENDED: u8 = 1;
const REVOKED: u8 = 2;

impl KeyEntry {
    pub fn new(
        id: String,
        service_id: String,
        service_name: String,
        env: Environment,
        status: KeyStatus,
    ) -> Self {
        let e = KeyEntry {
            id,
            service_id,
            service_name,
            env,
            status: AtomicU8::new(REVOKED),
            responses: Default::default(),
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
}

#[derive(Default)]
pub struct KeyIndex {
    by_digest: RwLock<HashMap<KeyDigest, Arc<KeyEntry>>>,
    by_id: RwLock<HashMap<String, Arc<KeyEntry>>>,
}

impl KeyIndex {
    pub fn insert(&self, digest: KeyDigest, e: KeyEntry) {
        let e = Arc::new(e);
        write(&self.by_id).insert(e.id.clone(), e.clone());
        write(&self.by_digest).insert(digest, e);
    }

    /// The active key whose digest is `d`, if any. The map is keyed by the
    /// digest (never by the secret) and the match is re-checked in constant time.
    pub fn authenticate(&self, d: &KeyDigest) -> Option<Arc<KeyEntry>> {
        let map = read(&self.by_digest);
        let (stored, e) = map.get_key_value(d)?;
        (stored.ct_eq(d) && e.status() == KeyStatus::Active).then(|| e.clone())
    }

    pub fn set_status(&self, id: &str, s: KeyStatus) -> bool {
        match read(&self.by_id).get(id) {
            Some(e) => {
                e.set_status(s);
                true
            }
            None => false,
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
    by_digest: RwLock<HashMap<KeyDigest, Arc<TokenEntry>>>,
}

impl TokenIndex {
    pub fn insert(&self, d: KeyDigest, t: TokenEntry) {
        write(&self.by_digest).insert(d, Arc::new(t));
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
}

#[derive(Default)]
pub struct UpstreamIndex {
    by_env: RwLock<HashMap<Environment, Arc<UpstreamEntry>>>,
}

impl UpstreamIndex {
    pub fn set(&self, env: Environment, u: UpstreamEntry) {
        write(&self.by_env).insert(env, Arc::new(u));
    }
    pub fn get(&self, env: Environment) -> Option<Arc<UpstreamEntry>> {
        read(&self.by_env).get(&env).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_and_suspension_take_effect_in_place() {
        let idx = KeyIndex::default();
        let d = KeyDigest([7; 32]);
        idx.insert(
            d,
            KeyEntry::new(
                "key_1".into(),
                "svc_1".into(),
                "a".into(),
                Environment::Dev,
                KeyStatus::Active,
            ),
        );
        assert!(idx.authenticate(&d).is_some());
        assert!(idx.set_status("key_1", KeyStatus::Suspended));
        assert!(idx.authenticate(&d).is_none());
        idx.set_status("key_1", KeyStatus::Active);
        assert!(idx.authenticate(&d).is_some());
        idx.set_status("key_1", KeyStatus::Revoked);
        assert!(idx.authenticate(&d).is_none());
        assert!(idx.authenticate(&KeyDigest([8; 32])).is_none());
        assert!(!idx.set_status("key_nope", KeyStatus::Revoked));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let idx = TokenIndex::default();
        let d = KeyDigest([1; 32]);
        idx.insert(
            d,
            TokenEntry {
                id: "tok_1".into(),
                role: "owner".into(),
                services: vec![],
                expires_at_ms: Some(100),
            },
        );
        assert!(idx.authenticate(&d, 99).is_some());
        assert!(idx.authenticate(&d, 100).is_none());
    }
}
