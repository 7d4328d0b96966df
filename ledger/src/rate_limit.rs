//! Per-API-key token buckets (SPEC §7): each key may make `rate` requests a second on
//! average with bursts of `burst`; beyond that a request is refused with 429 and the seconds
//! until a token is back, without touching anything else, so one busy key cannot starve the
//! others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most buckets kept; past this, buckets that have refilled completely are dropped.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key id.
#[derive(Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl RateLimiter {
    /// `rate` requests a second per key, bursts up to `burst`; `None` when `rate` is 0 (off).
    pub fn new(rate: u32, burst: u32) -> Option<Self> {
        (rate > 0).then(|| Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Takes a token for `key`, or says how long until one is back.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        if !buckets.contains_key(key) {
            buckets.insert(
                key.to_string(),
                Bucket {
                    tokens: self.burst,
                    at: now,
                },
            );
        }
        let Some(bucket) = buckets.get_mut(key) else {
            return Ok(());
        };
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_the_rate_and_keys_are_independent() {
        let Some(limiter) = RateLimiter::new(10, 5) else {
            panic!("a rate of 10 is on")
        };
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.take_at("a", t0).is_ok());
        }
        let wait = limiter.take_at("a", t0).err();
        assert!(wait.is_some_and(|w| w > Duration::ZERO && w <= Duration::from_millis(100)));
        assert!(
            limiter.take_at("b", t0).is_ok(),
            "another key is unaffected"
        );
        assert!(limiter
            .take_at("a", t0 + Duration::from_millis(100))
            .is_ok());
        assert!(limiter
            .take_at("a", t0 + Duration::from_millis(100))
            .is_err());
        for i in 0..5 {
            assert!(limiter
                .take_at("a", t0 + Duration::from_secs(10) + Duration::from_millis(i))
                .is_ok());
        }
        assert!(RateLimiter::new(0, 10).is_none());
    }
}
