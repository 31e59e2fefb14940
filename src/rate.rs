//! Posting rate per login: a token bucket (a burst, then a steady rate), shared by every
//! transport so a user cannot double their rate by posting over both.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before idle (full) ones are dropped.
const PRUNE_AT: usize = 10_000;

pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    // A plain mutex: the critical section is a hash lookup and arithmetic, never an await.
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(burst: u32, per_sec: f64) -> Self {
        Self {
            burst: f64::from(burst),
            per_sec,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one post from `key`'s bucket, or says how long to wait for the next one.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_AT && !buckets.contains_key(key) {
            buckets.retain(|_, b| self.refilled(b, now) < self.burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = self.refilled(bucket, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_sec,
            ))
        }
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_sec).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_steady_rate() {
        let limiter = RateLimiter::new(3, 1.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("a", t0).is_ok());
        }
        let wait = limiter.check("a", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another login has its own bucket.
        assert!(limiter.check("b", t0).is_ok());
        // One second later, one more post.
        assert!(limiter.check("a", t0 + Duration::from_secs(1)).is_ok());
        assert!(limiter.check("a", t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let limiter = RateLimiter::new(2, 10.0);
        let t0 = Instant::now();
        for i in 0..PRUNE_AT {
            limiter.check(&i.to_string(), t0).unwrap();
        }
        limiter.check("new", t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1);
    }
}
