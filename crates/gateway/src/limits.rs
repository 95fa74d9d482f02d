//! In-memory limits on the request path: request and token buckets, a
//! concurrency gauge, and the monthly spend of each key.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// A token bucket refilled continuously at `capacity` per minute. It may go
/// negative when usage is charged after the fact (tokens per minute).
#[derive(Debug)]
pub struct Bucket {
    state: Mutex<(f64, Instant)>,
}

impl Default for Bucket {
    /// Starts full: the first refill caps the level at the capacity in use.
    fn default() -> Self {
        Bucket::new(f64::INFINITY)
    }
}

impl Bucket {
    pub fn new(capacity: f64) -> Self {
        Bucket { state: Mutex::new((capacity, Instant::now())) }
    }

    fn refill(level: &mut (f64, Instant), capacity: f64, now: Instant) {
        let dt = now.saturating_duration_since(level.1).as_secs_f64();
        level.0 = (level.0 + dt * capacity / 60.0).min(capacity);
        level.1 = now;
    }

    /// Take one unit if available; otherwise the seconds until one is.
    pub fn take(&self, capacity: f64, now: Instant) -> Result<(), u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Self::refill(&mut s, capacity, now);
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - s.0) * 60.0 / capacity).ceil().max(1.0) as u64)
        }
    }

    /// Positive level required to start; otherwise the seconds until it is.
    pub fn check_positive(&self, capacity: f64, now: Instant) -> Result<(), u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Self::refill(&mut s, capacity, now);
        if s.0 > 0.0 {
            Ok(())
        } else {
            Err(((-s.0 + 1.0) * 60.0 / capacity).ceil().max(1.0) as u64)
        }
    }

    pub fn charge(&self, capacity: f64, amount: f64, now: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Self::refill(&mut s, capacity, now);
        s.0 -= amount;
    }
}

/// Requests in flight for one key.
#[derive(Debug, Default)]
pub struct Concurrency(AtomicU32);

impl Concurrency {
    pub fn try_acquire(&self, max: u32) -> bool {
        self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }
    pub fn release(&self) {
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
    pub fn current(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

/// Spend in the current calendar month (UTC).
#[derive(Debug, Default)]
pub struct Spend(Mutex<(String, f64)>);

impl Spend {
    pub fn set(&self, month: String, usd: f64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = (month, usd);
    }
    pub fn add(&self, month: &str, usd: f64) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 != month {
            *s = (month.to_string(), 0.0);
        }
        s.1 += usd;
    }
    pub fn get(&self, month: &str) -> f64 {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 == month {
            s.1
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn request_bucket_refills_per_minute() {
        let b = Bucket::new(2.0);
        let t0 = Instant::now();
        assert!(b.take(2.0, t0).is_ok());
        assert!(b.take(2.0, t0).is_ok());
        let wait = b.take(2.0, t0).unwrap_err();
        assert!((1..=30).contains(&wait), "{wait}");
        assert!(b.take(2.0, t0 + Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn token_bucket_goes_negative_and_recovers() {
        let b = Bucket::new(100.0);
        let t0 = Instant::now();
        assert!(b.check_positive(100.0, t0).is_ok());
        b.charge(100.0, 250.0, t0);
        assert!(b.check_positive(100.0, t0).is_err());
        assert!(b.check_positive(100.0, t0 + Duration::from_secs(95)).is_ok());
    }

    #[test]
    fn concurrency_and_spend() {
        let c = Concurrency::default();
        assert!(c.try_acquire(1));
        assert!(!c.try_acquire(1));
        c.release();
        c.release();
        assert_eq!(c.current(), 0);
        let s = Spend::default();
        s.add("2026-11", 1.5);
        s.add("2026-11", 1.0);
        assert_eq!(s.get("2026-11"), 2.5);
        assert_eq!(s.get("2026-12"), 0.0);
        s.add("2026-12", 0.25);
        assert_eq!(s.get("2026-12"), 0.25);
    }
}
