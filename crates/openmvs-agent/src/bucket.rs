//! The replay's rate: a token bucket over the agent's clock, so that a backlog drains at a
//! steady, configured pace however long it is, and a whole market's pharmacies coming back at
//! once ask the national system for a bounded load.

use std::time::Duration;

use openmvs_core::time::Timestamp;

/// A token bucket: `burst` requests at once, then `per_second` on average.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Option<Timestamp>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_second: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket { per_second: per_second.max(f64::MIN_POSITIVE), burst, tokens: burst, at: None }
    }

    fn refill(&mut self, now: Timestamp) {
        if let Some(at) = self.at {
            let secs = now.since(at).as_secs_f64();
            self.tokens = (self.tokens + secs * self.per_second).min(self.burst);
        }
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Timestamp) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let secs = (1.0 - self.tokens) / self.per_second;
            // Rounded up to the millisecond the clock counts in, so the wait is never short.
            Err(Duration::from_millis((secs * 1000.0).ceil() as u64))
        }
    }

    /// Takes a token whether or not one is there: a request that must follow another at once
    /// (a decommission after its verify) runs the bucket into debt, which the next takes wait for.
    pub fn charge(&mut self, now: Timestamp) {
        self.refill(now);
        self.tokens -= 1.0;
    }

    /// Tokens there now (for tests and the status page).
    pub fn available(&mut self, now: Timestamp) -> f64 {
        self.refill(now);
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let t0 = Timestamp::from_unix_millis(1_000_000);
        let mut b = TokenBucket::new(2.0, 3);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Ok(()));
        }
        assert_eq!(b.take(t0), Err(Duration::from_millis(500)));
        let t1 = t0.plus(Duration::from_millis(500));
        assert_eq!(b.take(t1), Ok(()));
        assert_eq!(b.take(t1), Err(Duration::from_millis(500)));
        // A long pause refills to the burst, no more.
        let t2 = t1.plus(Duration::from_secs(3600));
        assert!((b.available(t2) - 3.0).abs() < 1e-9);
        // A charge past the last token is a debt the next take waits for.
        for _ in 0..4 {
            b.charge(t2);
        }
        assert_eq!(b.take(t2), Err(Duration::from_millis(1000)));
    }
}
