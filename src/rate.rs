//! Token buckets (a burst, then a steady rate) by key: posts per login (shared by every
//! transport, so a user cannot double their rate by posting over both), posts per client
//! address across its logins, and new logins per client address.

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

    /// Takes a token from both buckets or from neither (the longer wait then): a post
    /// refused by its address's budget costs its login nothing, and the reverse.
    pub fn check_both(
        (first, first_key): (&Self, &str),
        (second, second_key): (&Self, &str),
        now: Instant,
    ) -> Result<(), Duration> {
        if let Some(wait) = first.wait(first_key, now).max(second.wait(second_key, now)) {
            return Err(wait);
        }
        first.check(first_key, now)?;
        if let Err(wait) = second.check(second_key, now) {
            // Emptied by another worker in between: nothing is charged after all.
            first.give_back(first_key);
            return Err(wait);
        }
        Ok(())
    }

    /// How long until `key` has a token; `None` if it has one now. Remembers nothing.
    fn wait(&self, key: &str, now: Instant) -> Option<Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = buckets
            .get(key)
            .map_or(self.burst, |b| self.refilled(b, now));
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / self.per_sec))
    }

    fn give_back(&self, key: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }

    /// Takes one token from `key`'s bucket, or says how long to wait for the next one.
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
    fn two_buckets_are_charged_together_or_not_at_all() {
        let (logins, addresses) = (RateLimiter::new(3, 1.0), RateLimiter::new(2, 1.0));
        let t0 = Instant::now();
        assert!(RateLimiter::check_both((&logins, "a"), (&addresses, "ip"), t0).is_ok());
        assert!(RateLimiter::check_both((&logins, "b"), (&addresses, "ip"), t0).is_ok());
        // The address is empty: login "a" keeps its two remaining tokens.
        assert!(RateLimiter::check_both((&logins, "a"), (&addresses, "ip"), t0).is_err());
        assert!(logins.check("a", t0).is_ok());
        assert!(logins.check("a", t0).is_ok());
        assert!(logins.check("a", t0).is_err());
        // An empty login does not spend its address's budget.
        let later = t0 + Duration::from_secs(1);
        assert!(RateLimiter::check_both((&logins, "a"), (&addresses, "ip"), t0).is_err());
        assert!(addresses.check("ip", later).is_ok());
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
