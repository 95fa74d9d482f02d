//! Failed authentication, per source address: a burst is allowed, then the
//! address backs off exponentially (1 s, 2 s, 4 s, ... up to 5 minutes), during
//! which its requests are refused: on the admin plane whatever they present, on
//! the data plane unless they carry a valid key (see `proxy::authenticate`). The
//! failures are audited in aggregate: one entry per address and plane per
//! flush, never one per attempt.
//!
//! The request path pays one atomic load while no address is backing off.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Failures are counted over this window; a quiet window starts afresh.
const WINDOW_MS: i64 = 10 * 60_000;
const FIRST_BACKOFF_MS: i64 = 1_000;
const MAX_BACKOFF_MS: i64 = 5 * 60_000;
/// Addresses tracked at most; beyond it the quietest are forgotten.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plane {
    Data,
    Admin,
}

impl Plane {
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Data => "data",
            Plane::Admin => "admin",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Source {
    window_start_ms: i64,
    failures: u32,
    backoff_ms: i64,
    blocked_until_ms: i64,
}

/// What happened at one address on one plane since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReport {
    pub plane: Plane,
    pub source: IpAddr,
    pub failures: u64,
    /// Requests refused while the address was backing off.
    pub throttled: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

#[derive(Default)]
struct Inner {
    sources: HashMap<IpAddr, Source>,
    pending: HashMap<(Plane, IpAddr), FailureReport>,
}

pub struct AuthGuard {
    burst: u32,
    /// Addresses currently backing off (an upper bound; lets the hot path skip the lock).
    blocked: AtomicUsize,
    inner: Mutex<Inner>,
}

impl AuthGuard {
    pub fn new(burst: u32) -> AuthGuard {
        AuthGuard { burst: burst.max(1), blocked: AtomicUsize::new(0), inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds to wait when `ip` is backing off (the request is refused and counted).
    pub fn check(&self, plane: Plane, ip: IpAddr, now_ms: i64) -> Option<u64> {
        if self.blocked.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut inner = self.lock();
        let until = inner.sources.get(&ip).map(|s| s.blocked_until_ms).filter(|&u| u > now_ms)?;
        let r = inner.pending.entry((plane, ip)).or_insert_with(|| report(plane, ip, now_ms));
        r.throttled += 1;
        r.last_ms = now_ms;
        Some(((until - now_ms) as u64).div_ceil(1000).max(1))
    }

    /// Count a failed authentication from `ip`.
    pub fn failed(&self, plane: Plane, ip: IpAddr, now_ms: i64) {
        let mut inner = self.lock();
        if inner.sources.len() >= MAX_TRACKED && !inner.sources.contains_key(&ip) {
            inner.sources.retain(|_, s| s.blocked_until_ms > now_ms || now_ms - s.window_start_ms < WINDOW_MS);
        }
        let s = inner.sources.entry(ip).or_default();
        if now_ms - s.window_start_ms >= WINDOW_MS && s.blocked_until_ms <= now_ms {
            *s = Source { window_start_ms: now_ms, ..Source::default() };
        }
        s.failures = s.failures.saturating_add(1);
        if s.failures > self.burst {
            s.backoff_ms = if s.backoff_ms == 0 { FIRST_BACKOFF_MS } else { (s.backoff_ms * 2).min(MAX_BACKOFF_MS) };
            let was_blocked = s.blocked_until_ms > now_ms;
            s.blocked_until_ms = now_ms + s.backoff_ms;
            // the window lasts at least as long as the back-off
            s.window_start_ms = s.window_start_ms.max(now_ms - WINDOW_MS + s.backoff_ms);
            if !was_blocked {
                self.blocked.fetch_add(1, Ordering::AcqRel);
            }
        }
        let r = inner.pending.entry((plane, ip)).or_insert_with(|| report(plane, ip, now_ms));
        r.failures += 1;
        r.last_ms = now_ms;
    }

    /// Take what happened since the last call (for the aggregate audit
    /// entries), and forget addresses whose back-off is over.
    pub fn drain(&self, now_ms: i64) -> Vec<FailureReport> {
        let mut inner = self.lock();
        let still_blocked = inner.sources.values().filter(|s| s.blocked_until_ms > now_ms).count();
        self.blocked.store(still_blocked, Ordering::Release);
        inner.sources.retain(|_, s| s.blocked_until_ms > now_ms || now_ms - s.window_start_ms < WINDOW_MS);
        let mut out: Vec<FailureReport> = inner.pending.drain().map(|(_, r)| r).collect();
        out.sort_by_key(|r| (r.first_ms, r.source));
        out
    }
}

fn report(plane: Plane, source: IpAddr, now_ms: i64) -> FailureReport {
    FailureReport { plane, source, failures: 0, throttled: 0, first_ms: now_ms, last_ms: now_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_passes_then_backoff_doubles() {
        let g = AuthGuard::new(3);
        let a = ip("10.0.0.1");
        for t in 0..3 {
            g.failed(Plane::Data, a, t);
            assert_eq!(g.check(Plane::Data, a, t), None, "within the burst");
        }
        g.failed(Plane::Data, a, 10);
        assert_eq!(g.check(Plane::Data, a, 10), Some(1));
        assert_eq!(g.check(Plane::Data, a, 1_011), None, "1 s back-off is over");
        g.failed(Plane::Data, a, 1_100);
        assert_eq!(g.check(Plane::Data, a, 1_100), Some(2));
        g.failed(Plane::Data, a, 3_200);
        assert_eq!(g.check(Plane::Data, a, 3_200), Some(4));
        // another address is not affected
        assert_eq!(g.check(Plane::Data, ip("10.0.0.2"), 3_200), None);
    }

    #[test]
    fn backoff_is_capped_and_forgotten_after_a_quiet_window() {
        let g = AuthGuard::new(1);
        let a = ip("2001:db8::1");
        let mut t = 0;
        for _ in 0..20 {
            g.failed(Plane::Admin, a, t);
            t += 1;
        }
        let wait = g.check(Plane::Admin, a, t).unwrap();
        assert!(wait <= 300, "capped at 5 minutes, got {wait}");
        let later = t + MAX_BACKOFF_MS + WINDOW_MS + 1;
        g.drain(later);
        g.failed(Plane::Admin, a, later);
        assert_eq!(g.check(Plane::Admin, a, later), None, "a fresh window allows the burst again");
    }

    #[test]
    fn failures_are_reported_in_aggregate_per_plane_and_source() {
        let g = AuthGuard::new(2);
        let a = ip("192.0.2.7");
        for t in 0..5 {
            g.failed(Plane::Admin, a, t);
        }
        assert!(g.check(Plane::Admin, a, 6).is_some());
        g.failed(Plane::Data, ip("192.0.2.8"), 7);
        let r = g.drain(8);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].plane, r[0].failures, r[0].throttled, r[0].first_ms, r[0].last_ms),
            (Plane::Admin, 5, 1, 0, 6)
        );
        assert_eq!((r[1].plane, r[1].failures, r[1].throttled), (Plane::Data, 1, 0));
        assert!(g.drain(9).is_empty(), "drained");
    }
}
