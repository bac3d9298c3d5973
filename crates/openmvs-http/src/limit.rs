//! Per-client rate limiting: a token bucket per client id, so one misbehaving terminal cannot
//! take the capacity every other pharmacy needs. Over the limit: 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Limits of one client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: f64,
}

impl Default for RateLimit {
    /// 100 requests per second sustained, 200 at once: far above a pharmacy's counter, low
    /// enough that one broken client cannot crowd out the others.
    fn default() -> RateLimit {
        RateLimit { per_second: 100.0, burst: 200.0 }
    }
}

/// The most clients tracked; beyond it, idle buckets are dropped (a full bucket is the same as none).
const MAX_CLIENTS: usize = 100_000;
const SHARDS: usize = 16;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by client id.
pub struct Limiter {
    limit: RateLimit,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

impl Limiter {
    /// A limiter applying `limit` to every client.
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter { limit, shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    /// Takes one token for `client` at `now`; `Err(seconds)` to wait when there is none.
    pub fn check_at(&self, client: &str, now: Instant) -> Result<(), u64> {
        let shard = client.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % SHARDS;
        let mut map = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_CLIENTS / SHARDS && !map.contains_key(client) {
            let (rate, burst) = (self.limit.per_second, self.limit.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(client.to_owned()).or_insert(Bucket { tokens: self.limit.burst, at: now });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.limit.per_second).min(self.limit.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.limit.per_second).ceil().max(1.0) as u64)
        }
    }

    /// Takes one token for `client` now.
    pub fn check(&self, client: &str) -> Result<(), u64> {
        self.check_at(client, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_unaffected() {
        let l = Limiter::new(RateLimit { per_second: 10.0, burst: 3.0 });
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("a", t).is_ok());
        }
        assert_eq!(l.check_at("a", t), Err(1));
        assert!(l.check_at("b", t).is_ok());
        assert!(l.check_at("a", t + Duration::from_millis(100)).is_ok(), "one token back after 1/rate");
    }
}
