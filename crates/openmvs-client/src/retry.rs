//! When the clients send a request again, and how long they wait first: [`RetryPolicy`], and
//! how a wait is read from `Retry-After` or computed as a capped exponential backoff.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How a client retries a request that got no answer (a connection failure, a timeout) or was
/// refused for load (429, 503, which api.md §2 promises change nothing).
///
/// Every retry sends the same request: a single-pack or bulk request keeps its
/// `client_trx_id`, so the national system answers a retry of a request it already processed
/// with the first answer instead of doing it twice. A request that is not safe to repeat after
/// an unknown outcome (an alert comment, an OBP's JSON upload) is retried only when it surely
/// did not reach the server: a failed connection, a 429, a 503. Other 4xx and 5xx answers are
/// never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times a request is sent at most, the first time included; 1 turns retries off.
    /// Default 5.
    pub max_attempts: u32,
    /// The backoff before the first retry when the server names no wait; it doubles with each
    /// further retry. Default 200 ms.
    pub initial_backoff: Duration,
    /// The longest computed backoff. Default 10 s.
    pub max_backoff: Duration,
    /// The longest `Retry-After` the client waits for; a refusal asking for more is returned at
    /// once (as [`crate::ClientError::Refused`] with its `retry_after`), for the caller to
    /// decide. Default 120 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// A policy that sends every request once.
    pub fn never() -> RetryPolicy {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// The backoff before retry number `retry` (1 for the first retry) when the server named no
    /// wait: `initial_backoff` doubled per retry, capped at `max_backoff`, of which the upper half
    /// is drawn at random so that many clients cut off together do not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doubled = self.initial_backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let base = doubled.min(self.max_backoff);
        let half = base / 2;
        half + half.mul_f64(unit_random())
    }
}

/// A number in `[0, 1)` from the operating system's generator.
fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    // Without randomness the backoff is still correct, only not spread: take the full wait.
    if getrandom::fill(&mut b).is_err() {
        return 0.999;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether `status` is a refusal for load, which changed nothing.
pub(crate) fn is_load_refusal(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
}

/// The wait `Retry-After` names, in seconds (the form OpenMVS sends); `None` without one, or in
/// the HTTP-date form, which the client treats as no wait named.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap_and_spreads_over_its_upper_half() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        for (retry, base) in [(1, 100), (2, 200), (3, 400), (4, 500), (30, 500)] {
            for _ in 0..20 {
                let b = p.backoff(retry);
                let base = Duration::from_millis(base);
                assert!(
                    b >= base / 2 && b <= base,
                    "retry {retry}: {b:?} outside [{:?}, {base:?}]",
                    base / 2
                );
            }
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_only() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, " 7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
