//! The TTL cache in front of the secret sources.
//!
//! Each reference has one [`CacheEntry`]. Reading a fresh value takes one
//! uncontended read lock. When the value is older than the TTL, the first
//! caller refreshes it while the others wait on the same refresh (one fetch in
//! flight per reference). When the source fails, the last good value keeps
//! serving until `stale_window` after it was fetched; after that, callers get
//! an error and the request fails closed.

use crate::{FetchError, SecretRef, SecretSource};
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A fetched secret, with the header value prepared once so the request path
/// does not copy the secret per request.
pub struct Credential {
    secret: SecretString,
    header: HeaderValue,
    fingerprint: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn new(secret: SecretString) -> Result<Self, FetchError> {
        let mut header = HeaderValue::from_str(secret.expose_secret())
            .map_err(|_| FetchError::Malformed("not a valid header value".into()))?;
        header.set_sensitive(true);
        let fingerprint = keyward_core::crypto::fingerprint(secret.expose_secret());
        Ok(Credential {
            secret,
            header,
            fingerprint,
        })
    }
    /// The value for the upstream `x-api-key` header (marked sensitive).
    pub fn header(&self) -> &HeaderValue {
        &self.header
    }
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CacheError {
    #[error("upstream credential unavailable ({0})")]
    Unavailable(FetchError),
}

struct Cached {
    value: Arc<Credential>,
    fetched: Instant,
}

pub struct CacheEntry {
    reference: SecretRef,
    state: RwLock<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
}

impl CacheEntry {
    pub fn reference(&self) -> &SecretRef {
        &self.reference
    }
}

#[derive(Clone)]
pub struct SecretCache {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn SecretSource>,
    ttl: Duration,
    stale_window: Duration,
    entries: RwLock<HashMap<SecretRef, Arc<CacheEntry>>>,
}

impl SecretCache {
    pub fn new(source: Arc<dyn SecretSource>, ttl: Duration, stale_window: Duration) -> Self {
        SecretCache {
            inner: Arc::new(Inner {
                source,
                ttl,
                stale_window,
                entries: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The entry for `r`, created on first use. Hold on to it to skip the map
    /// lookup on later reads.
    pub fn entry(&self, r: &SecretRef) -> Arc<CacheEntry> {
        if let Ok(map) = self.inner.entries.read() {
            if let Some(e) = map.get(r) {
                return e.clone();
            }
        }
        let mut map = match self.inner.entries.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry(r.clone())
            .or_insert_with(|| {
                Arc::new(CacheEntry {
                    reference: r.clone(),
                    state: RwLock::new(None),
                    refresh: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// Drop the cached value of `r` so the next read fetches it again.
    pub fn invalidate(&self, r: &SecretRef) {
        if let Ok(map) = self.inner.entries.read() {
            if let Some(e) = map.get(r) {
                if let Ok(mut s) = e.state.write() {
                    *s = None;
                }
            }
        }
    }

    fn fresh(&self, e: &CacheEntry, now: Instant) -> Option<Arc<Credential>> {
        let s = e.state.read().ok()?;
        let c = s.as_ref()?;
        (now.duration_since(c.fetched) < self.inner.ttl).then(|| c.value.clone())
    }

    /// The current value of `e`'s secret.
    pub async fn get(&self, e: &CacheEntry) -> Result<Arc<Credential>, CacheError> {
        if let Some(v) = self.fresh(e, Instant::now()) {
            return Ok(v);
        }
        let _one_fetch = e.refresh.lock().await;
        // someone else may have refreshed while we waited
        if let Some(v) = self.fresh(e, Instant::now()) {
            return Ok(v);
        }
        let fetched = self
            .inner
            .source
            .fetch(&e.reference)
            .await
            .and_then(Credential::new);
        let now = Instant::now();
        match fetched {
            Ok(cred) => {
                let cred = Arc::new(cred);
                if let Ok(mut s) = e.state.write() {
                    *s = Some(Cached {
                        value: cred.clone(),
                        fetched: now,
                    });
                }
                Ok(cred)
            }
            Err(err) => {
                let last = e.state.read().ok().and_then(|s| {
                    s.as_ref()
                        .map(|c| (c.value.clone(), now.duration_since(c.fetched)))
                });
                match last {
                    Some((value, age)) if age < self.inner.stale_window => {
                        tracing::warn!(
                            scheme = e.reference.scheme(),
                            reason = %err,
                            age_s = age.as_secs(),
                            "secret source failed; serving the last good value"
                        );
                        Ok(value)
                    }
                    _ => {
                        tracing::error!(scheme = e.reference.scheme(), reason = %err, "secret source failed; no usable value");
                        Err(CacheError::Unavailable(err))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        fail: AtomicBool,
    }

    #[async_trait]
    impl SecretSource for Counting {
        async fn fetch(&self, _r: &SecretRef) -> Result<SecretString, FetchError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.fail.load(Ordering::SeqCst) {
                Err(FetchError::Unreachable("down".into()))
            } else {
                Ok(SecretString::from(format!("value-{n}")))
            }
        }
    }

    fn setup(ttl_ms: u64, stale_ms: u64) -> (Arc<Counting>, SecretCache, Arc<CacheEntry>) {
        let src = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
        });
        let cache = SecretCache::new(
            src.clone(),
            Duration::from_millis(ttl_ms),
            Duration::from_millis(stale_ms),
        );
        let e = cache.entry(&"env:X".parse().unwrap());
        (src, cache, e)
    }

    #[tokio::test]
    async fn one_fetch_in_flight_for_many_misses() {
        let (src, cache, e) = setup(60_000, 60_000);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, e) = (cache.clone(), e.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(&e)
                    .await
                    .map(|c| c.secret().expose_secret().to_string())
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "value-0");
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refreshes_after_ttl() {
        let (src, cache, e) = setup(30, 60_000);
        cache.get(&e).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let v = cache.get(&e).await.unwrap();
        assert_eq!(v.secret().expose_secret(), "value-1");
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn stale_value_bridges_an_outage_then_fails_closed() {
        let (src, cache, e) = setup(10, 150);
        cache.get(&e).await.unwrap();
        src.fail.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(15)).await;
        assert_eq!(
            cache.get(&e).await.unwrap().secret().expose_secret(),
            "value-0"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(matches!(
            cache.get(&e).await,
            Err(CacheError::Unavailable(_))
        ));
    }

    #[test]
    fn credential_debug_hides_the_value() {
        let c = Credential::new(SecretString::from("very-secret-value".to_string())).unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
        assert!(c.header().is_sensitive());
        assert!(Credential::new(SecretString::from("bad\nvalue".to_string())).is_err());
    }
}
