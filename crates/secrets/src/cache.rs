//! The TTL cache in front of the secret sources.
//!
//! Each reference has one [`CacheEntry`]. Reading a fresh value takes one
//! uncontended read lock. When the value is older than the TTL, the first
//! caller refreshes it while the others wait on the same refresh (one fetch in
//! flight per reference); callers that waited take the result of that fetch
//! instead of fetching again. When the source fails, the last good value keeps
//! serving until `stale_window` after it was fetched; after that, callers get
//! an error and the request fails closed. A failed source is asked again at
//! most once per `min(ttl, 5s)`; in between, callers get the stale value (or
//! the error) at once instead of queueing behind another slow attempt.
//!
//! Rotation: when the source reports a previous version (AWS `AWSPREVIOUS`,
//! Vault KV version N-1), or the value changes under the cache, the value
//! before it stays available through [`SecretCache::previous`] for the grace
//! window after keyward first saw the change (for retries of requests that
//! raced the rotation).

use crate::{FetchError, Fetched, SecretRef, SecretSource};
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long the value before a rotation stays usable by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15 * 60);

/// A fetched secret, with the header value prepared once so the request path
/// does not copy the secret per request.
pub struct Credential {
    secret: SecretString,
    header: HeaderValue,
    fingerprint: String,
    version: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("fingerprint", &self.fingerprint)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn new(secret: SecretString) -> Result<Self, FetchError> {
        let mut header = HeaderValue::from_str(secret.expose_secret())
            .map_err(|_| FetchError::Malformed("not a valid header value".into()))?;
        header.set_sensitive(true);
        let fingerprint = keyward_core::crypto::fingerprint(secret.expose_secret());
        Ok(Credential { secret, header, fingerprint, version: None })
    }
    /// The source's version id for this value, when the source has versions.
    pub fn with_version(mut self, version: Option<String>) -> Self {
        self.version = version;
        self
    }
    /// The value for the upstream `x-api-key` header (marked sensitive).
    pub fn header(&self) -> &HeaderValue {
        &self.header
    }
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
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

/// Counters since the cache was made, for the gateway's `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Fetches sent to a source.
    pub fetches: u64,
    /// Fetches that failed.
    pub failures: u64,
    /// Reads answered with the last good value because the source failed.
    pub stale_serves: u64,
    /// Reads refused: the source failed and no value within the stale window.
    pub unavailable: u64,
    /// Value changes seen at a source.
    pub rotations: u64,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    failures: AtomicU64,
    stale_serves: AtomicU64,
    unavailable: AtomicU64,
    rotations: AtomicU64,
}

struct Good {
    value: Arc<Credential>,
    previous: Option<Arc<Credential>>,
    fetched: Instant,
    /// When keyward first saw the current value replace another one.
    rotated: Option<Instant>,
}

#[derive(Default)]
struct State {
    good: Option<Good>,
    /// The last attempt failed (cleared by a success).
    failed: Option<(Instant, FetchError)>,
    /// Bumped by every attempt: a caller that waited for the refresh lock
    /// sees whether someone else fetched meanwhile.
    attempts: u64,
}

pub struct CacheEntry {
    reference: SecretRef,
    state: RwLock<State>,
    refresh: tokio::sync::Mutex<()>,
}

impl CacheEntry {
    pub fn reference(&self) -> &SecretRef {
        &self.reference
    }

    /// How long ago the value in use was fetched (`None`: never fetched).
    /// Beyond the cache TTL it is being served stale because the source failed.
    pub fn age(&self) -> Option<Duration> {
        let s = self.state.read().ok()?;
        s.good.as_ref().map(|g| g.fetched.elapsed())
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
    grace: Duration,
    entries: RwLock<HashMap<SecretRef, Arc<CacheEntry>>>,
    counters: Counters,
}

enum Answer {
    Fresh(Arc<Credential>),
    Stale(Arc<Credential>),
    Failed(FetchError),
}

impl SecretCache {
    pub fn new(source: Arc<dyn SecretSource>, ttl: Duration, stale_window: Duration) -> Self {
        Self::with_grace(source, ttl, stale_window, DEFAULT_GRACE)
    }

    /// Like [`SecretCache::new`], with the rotation grace window: how long
    /// the value before a rotation stays available through
    /// [`SecretCache::previous`].
    pub fn with_grace(source: Arc<dyn SecretSource>, ttl: Duration, stale_window: Duration, grace: Duration) -> Self {
        SecretCache {
            inner: Arc::new(Inner {
                source,
                ttl,
                stale_window,
                grace,
                entries: RwLock::new(HashMap::new()),
                counters: Counters::default(),
            }),
        }
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            fetches: c.fetches.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            stale_serves: c.stale_serves.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
            rotations: c.rotations.load(Ordering::Relaxed),
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
                    state: RwLock::new(State::default()),
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
                    *s = State::default();
                }
            }
        }
    }

    /// The value before the current one, while the grace window since the
    /// rotation lasts: for retrying a request that raced a rotation.
    pub fn previous(&self, e: &CacheEntry) -> Option<Arc<Credential>> {
        let s = e.state.read().ok()?;
        let g = s.good.as_ref()?;
        let rotated = g.rotated?;
        (rotated.elapsed() < self.inner.grace).then(|| g.previous.clone()).flatten()
    }

    fn retry_after_failure(&self) -> Duration {
        self.inner.ttl.min(Duration::from_secs(5))
    }

    /// What the state answers without a fetch, if anything: a fresh value,
    /// or (within the retry interval after a failure) the stale value or
    /// the error.
    fn settled(&self, s: &State, now: Instant, any_attempt: bool) -> Option<Answer> {
        match (&s.failed, &s.good) {
            (None, Some(g)) if now.duration_since(g.fetched) < self.inner.ttl => Some(Answer::Fresh(g.value.clone())),
            (Some((at, err)), good) if any_attempt || now.duration_since(*at) < self.retry_after_failure() => {
                match good {
                    Some(g) if now.duration_since(g.fetched) < self.inner.stale_window => {
                        Some(Answer::Stale(g.value.clone()))
                    }
                    _ => Some(Answer::Failed(err.clone())),
                }
            }
            _ => None,
        }
    }

    fn answer(&self, a: Answer) -> Result<Arc<Credential>, CacheError> {
        let c = &self.inner.counters;
        match a {
            Answer::Fresh(v) => Ok(v),
            Answer::Stale(v) => {
                c.stale_serves.fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            Answer::Failed(e) => {
                c.unavailable.fetch_add(1, Ordering::Relaxed);
                Err(CacheError::Unavailable(e))
            }
        }
    }

    /// The current value of `e`'s secret.
    pub async fn get(&self, e: &CacheEntry) -> Result<Arc<Credential>, CacheError> {
        let seen = {
            let s = match e.state.read() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            if let Some(a) = self.settled(&s, Instant::now(), false) {
                return self.answer(a);
            }
            s.attempts
        };
        let _one_fetch = e.refresh.lock().await;
        {
            // someone else may have fetched while we waited: take its result
            let s = match e.state.read() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            if let Some(a) = self.settled(&s, Instant::now(), s.attempts != seen) {
                return self.answer(a);
            }
        }
        let c = &self.inner.counters;
        c.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = self.inner.source.fetch_versioned(&e.reference).await.and_then(|f: Fetched| {
            let cred = Credential::new(f.value)?.with_version(f.version);
            let prev = f.previous.and_then(|p| Credential::new(p).ok());
            Ok((cred, prev))
        });
        let now = Instant::now();
        let mut s = match e.state.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        s.attempts += 1;
        match fetched {
            Ok((cred, source_prev)) => {
                let cred = Arc::new(cred);
                let source_prev = source_prev.filter(|p| p.fingerprint() != cred.fingerprint()).map(Arc::new);
                let (previous, rotated) = match s.good.take() {
                    Some(old) if old.value.fingerprint() != cred.fingerprint() => {
                        c.rotations.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            scheme = e.reference.scheme(),
                            version = cred.version().unwrap_or(""),
                            "secret changed at its source"
                        );
                        (source_prev.or(Some(old.value)), Some(now))
                    }
                    Some(old) => (source_prev.or(old.previous), old.rotated),
                    None => {
                        let rotated = source_prev.is_some().then_some(now);
                        (source_prev, rotated)
                    }
                };
                s.good = Some(Good { value: cred.clone(), previous, fetched: now, rotated });
                s.failed = None;
                Ok(cred)
            }
            Err(err) => {
                c.failures.fetch_add(1, Ordering::Relaxed);
                s.failed = Some((now, err.clone()));
                match &s.good {
                    Some(g) if now.duration_since(g.fetched) < self.inner.stale_window => {
                        tracing::warn!(
                            scheme = e.reference.scheme(),
                            reference = %e.reference,
                            reason = %err,
                            age_s = now.duration_since(g.fetched).as_secs(),
                            "secret source failed; serving the last good value"
                        );
                        c.stale_serves.fetch_add(1, Ordering::Relaxed);
                        Ok(g.value.clone())
                    }
                    _ => {
                        tracing::error!(
                            scheme = e.reference.scheme(),
                            reference = %e.reference,
                            reason = %err,
                            "secret source failed; no usable value"
                        );
                        c.unavailable.fetch_add(1, Ordering::Relaxed);
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
        let src = Arc::new(Counting { calls: AtomicUsize::new(0), fail: AtomicBool::new(false) });
        let cache = SecretCache::new(src.clone(), Duration::from_millis(ttl_ms), Duration::from_millis(stale_ms));
        let e = cache.entry(&"env:X".parse().unwrap());
        (src, cache, e)
    }

    #[tokio::test]
    async fn one_fetch_in_flight_for_many_misses() {
        let (src, cache, e) = setup(60_000, 60_000);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, e) = (cache.clone(), e.clone());
            tasks
                .push(tokio::spawn(async move { cache.get(&e).await.map(|c| c.secret().expose_secret().to_string()) }));
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
        assert_eq!(cache.get(&e).await.unwrap().secret().expose_secret(), "value-0");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(matches!(cache.get(&e).await, Err(CacheError::Unavailable(_))));
    }

    #[tokio::test]
    async fn waiters_take_the_result_of_a_failed_fetch() {
        let (src, cache, e) = setup(60_000, 60_000);
        src.fail.store(true, Ordering::SeqCst);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, e) = (cache.clone(), e.clone());
            tasks.push(tokio::spawn(async move { cache.get(&e).await.is_err() }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        // one attempt, not one per waiting request
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
        let st = cache.stats();
        assert_eq!((st.fetches, st.failures, st.unavailable), (1, 1, 20));
    }

    #[tokio::test]
    async fn a_failing_source_is_asked_at_most_once_per_retry_interval() {
        let (src, cache, e) = setup(40, 60_000);
        cache.get(&e).await.unwrap();
        src.fail.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..5 {
            let v = cache.get(&e).await.unwrap();
            assert_eq!(v.secret().expose_secret(), "value-0");
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats().stale_serves, 5);
        // the source recovers: in use again after the retry interval
        src.fail.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let v = cache.get(&e).await.unwrap();
        assert_eq!(v.secret().expose_secret(), "value-2");
    }

    #[tokio::test]
    async fn a_changed_value_keeps_the_previous_one_for_the_grace_window() {
        let src = Arc::new(Counting { calls: AtomicUsize::new(0), fail: AtomicBool::new(false) });
        let cache = SecretCache::with_grace(
            src,
            Duration::from_millis(10),
            Duration::from_secs(60),
            Duration::from_millis(300),
        );
        let e = cache.entry(&"env:X".parse().unwrap());
        cache.get(&e).await.unwrap();
        assert!(cache.previous(&e).is_none());
        tokio::time::sleep(Duration::from_millis(15)).await;
        let now = cache.get(&e).await.unwrap();
        assert_eq!(now.secret().expose_secret(), "value-1");
        let prev = cache.previous(&e).unwrap();
        assert_eq!(prev.secret().expose_secret(), "value-0");
        assert_eq!(cache.stats().rotations, 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(cache.previous(&e).is_none());
    }

    struct Versioned;

    #[async_trait]
    impl SecretSource for Versioned {
        async fn fetch(&self, _r: &SecretRef) -> Result<SecretString, FetchError> {
            Ok(SecretString::from("current".to_string()))
        }
        async fn fetch_versioned(&self, _r: &SecretRef) -> Result<Fetched, FetchError> {
            Ok(Fetched {
                value: SecretString::from("current".to_string()),
                version: Some("v7".into()),
                previous: Some(SecretString::from("older".to_string())),
            })
        }
    }

    #[tokio::test]
    async fn the_sources_previous_version_is_offered_with_the_version_id() {
        let cache = SecretCache::new(Arc::new(Versioned), Duration::from_secs(60), Duration::from_secs(60));
        let e = cache.entry(&"aws-sm://x".parse().unwrap());
        let c = cache.get(&e).await.unwrap();
        assert_eq!(c.version(), Some("v7"));
        assert!(!format!("{c:?}").contains("current"));
        let p = cache.previous(&e).unwrap();
        assert_eq!(p.secret().expose_secret(), "older");
    }

    #[test]
    fn credential_debug_hides_the_value() {
        let c = Credential::new(SecretString::from("very-secret-value".to_string())).unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
        assert!(c.header().is_sensitive());
        assert!(Credential::new(SecretString::from("bad\nvalue".to_string())).is_err());
    }
}
