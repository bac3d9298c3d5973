//! The token endpoint's own admission, so that no number of bad logins takes capacity from
//! authenticated traffic.
//!
//! A login costs an argon2id hash: tens of milliseconds of a core and several MiB of memory,
//! against well under a millisecond for a verification with a token. So logins do not share the
//! request budget of [`crate::shed`]; they have their own:
//!
//! - **A hashing budget**: at most `concurrency` secrets are checked at once, and at most `queue`
//!   logins wait for their turn (each at most [`WAIT`]); beyond, 503 with `Retry-After`. The
//!   default, one at a time, leaves the other cores to requests with tokens whatever the flood.
//! - **A limiter of failed attempts**, per client id and per source address: each failure takes a
//!   token from a bucket that refills over `failure_window`; an empty bucket refuses the next
//!   attempt with 429 and `Retry-After` before any hash is computed. A client that typed its
//!   secret wrong a few times waits a little; a script that guesses waits longer with every
//!   guess and costs the node nothing meanwhile. A valid client at another address is not
//!   affected. A client id whose secret is being guessed (from any number of addresses) gets no
//!   new token until its allowance comes back; the tokens it holds keep working, and requests
//!   with tokens never meet this limiter.
//!
//! Attempts refused here are counted in `/metrics`, not audited one by one (an audited login is
//! one whose secret was checked): a flood would otherwise become a flood of writes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use openmvs_telemetry::Exposition;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The longest a login waits for its turn to be hashed, then 503 with `Retry-After`. Well under
/// the time a client waits for an answer (the offline agent gives up after 3 s, and the login is
/// only the first half of its request): a market's pharmacies coming back after an outage all log
/// in at once, and a login that waited longer than its client would be answered to no one, and
/// count as no answer (the agent's backoff, up to minutes) instead of a refusal that says when to
/// come back.
pub const WAIT: Duration = Duration::from_secs(1);

/// The limits of the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginSettings {
    /// Secrets checked at once.
    pub concurrency: usize,
    /// Logins waiting for a turn; beyond, 503.
    pub queue: usize,
    /// Failed attempts a client id may make within `failure_window` before it must wait.
    pub failures_per_client: u32,
    /// Failed attempts one address may make within `failure_window` before it must wait.
    pub failures_per_address: u32,
    /// The time over which a spent allowance comes back.
    pub failure_window: Duration,
}

impl Default for LoginSettings {
    /// One hash at a time (a node's cores serve tokens, not guesses), 32 waiting, and 20 failures
    /// per client id or 10 per address per 5 minutes: far more than a pharmacy mistyping its
    /// secret, far less than a guesser needs.
    fn default() -> LoginSettings {
        LoginSettings {
            concurrency: 1,
            queue: 32,
            failures_per_client: 20,
            failures_per_address: 10,
            failure_window: Duration::from_secs(300),
        }
    }
}

/// Why a login was refused before its secret was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Too many recent failures of this client id or from this address: retry after this many
    /// seconds (429).
    Limited {
        /// Seconds until one more attempt is allowed.
        retry_after: u64,
        /// What was over its allowance: `client_id` or `address`.
        by: &'static str,
    },
    /// Every turn of the hashing budget is taken and the queue is full, or the wait was too
    /// long (503).
    Busy,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The most keys a failure limiter tracks; beyond, full buckets are dropped (a full bucket is
/// the same as none).
const MAX_KEYS: usize = 100_000;

/// Buckets of failures by key: each failure takes one, they come back at `burst` per window.
struct FailureLimiter {
    burst: f64,
    per_second: f64,
    map: Mutex<HashMap<String, Bucket>>,
}

impl FailureLimiter {
    fn new(burst: u32, window: Duration) -> FailureLimiter {
        let burst = f64::from(burst.max(1));
        FailureLimiter {
            burst,
            per_second: burst / window.as_secs_f64().max(1.0),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        b.tokens =
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_second).min(self.burst);
        b.at = now;
    }

    /// `Err(seconds)` while the key has no allowance left.
    fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = map.get_mut(key) else { return Ok(()) };
        self.refill(b, now);
        if b.tokens >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }

    fn fail(&self, key: &str, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let (rate, burst) = (self.per_second, self.burst);
            map.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
            if map.len() >= MAX_KEYS {
                // Every tracked key is failing: keep the memory bounded, forget the oldest half.
                let mut ats: Vec<Instant> = map.values().map(|b| b.at).collect();
                ats.sort_unstable();
                let cut = ats[ats.len() / 2];
                map.retain(|_, b| b.at > cut);
            }
        }
        let b = map.entry(key.to_owned()).or_insert(Bucket { tokens: self.burst, at: now });
        self.refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

/// The token endpoint's admission: a hashing budget and limiters of failed attempts.
pub struct LoginGuard {
    settings: LoginSettings,
    hashing: Semaphore,
    waiting: AtomicUsize,
    by_client: FailureLimiter,
    by_address: FailureLimiter,
    limited: AtomicU64,
    busy: AtomicU64,
    failed: AtomicU64,
}

impl Default for LoginGuard {
    fn default() -> LoginGuard {
        LoginGuard::new(LoginSettings::default())
    }
}

impl LoginGuard {
    /// A guard with these limits.
    pub fn new(settings: LoginSettings) -> LoginGuard {
        LoginGuard {
            settings,
            hashing: Semaphore::new(settings.concurrency.max(1)),
            waiting: AtomicUsize::new(0),
            by_client: FailureLimiter::new(settings.failures_per_client, settings.failure_window),
            by_address: FailureLimiter::new(settings.failures_per_address, settings.failure_window),
            limited: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The limits in force.
    pub fn settings(&self) -> LoginSettings {
        self.settings
    }

    /// Whether `client_id` from `address` may try now.
    pub fn check(&self, client_id: &str, address: Option<IpAddr>, now: Instant) -> Result<(), LoginRefusal> {
        let refuse = |retry_after, by| {
            self.limited.fetch_add(1, Ordering::Relaxed);
            LoginRefusal::Limited { retry_after, by }
        };
        if let Some(ip) = address {
            self.by_address.check(&ip.to_string(), now).map_err(|s| refuse(s, "address"))?;
        }
        self.by_client.check(client_id, now).map_err(|s| refuse(s, "client_id"))
    }

    /// Waits for a turn to check a secret: at most [`WAIT`], behind at most `queue` others.
    pub async fn turn(&self) -> Result<SemaphorePermit<'_>, LoginRefusal> {
        if let Ok(p) = self.hashing.try_acquire() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.settings.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.busy.fetch_add(1, Ordering::Relaxed);
            return Err(LoginRefusal::Busy);
        }
        let got = tokio::time::timeout(WAIT, self.hashing.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(Ok(p)) => Ok(p),
            _ => {
                self.busy.fetch_add(1, Ordering::Relaxed);
                Err(LoginRefusal::Busy)
            }
        }
    }

    /// Records a failed attempt of `client_id` from `address`.
    pub fn failed(&self, client_id: &str, address: Option<IpAddr>, now: Instant) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.by_client.fail(client_id, now);
        if let Some(ip) = address {
            self.by_address.fail(&ip.to_string(), now);
        }
    }

    /// Writes the figures into `/metrics`.
    pub fn write_metrics(&self, out: &mut Exposition) {
        out.counter(
            "openmvs_login_failures_total",
            "Logins whose client id or secret was wrong.",
            self.failed.load(Ordering::Relaxed),
        );
        out.counter_family(
            "openmvs_login_refused_total",
            "Logins refused before their secret was checked: limited (429, too many failures of the client id or address) or busy (503, the hashing budget full).",
        )
        .sample(&[("reason", "limited")], self.limited.load(Ordering::Relaxed))
        .sample(&[("reason", "busy")], self.busy.load(Ordering::Relaxed));
        out.gauge(
            "openmvs_login_waiting",
            "Logins waiting for a turn to be hashed.",
            self.waiting.load(Ordering::Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
    }

    #[test]
    fn failures_use_up_an_allowance_that_comes_back_over_the_window() {
        let g = LoginGuard::new(LoginSettings {
            failures_per_client: 3,
            failures_per_address: 100,
            failure_window: Duration::from_secs(30),
            ..LoginSettings::default()
        });
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(g.check("c1", ip(1), t), Ok(()));
            g.failed("c1", ip(1), t);
        }
        assert_eq!(g.check("c1", ip(1), t), Err(LoginRefusal::Limited { retry_after: 10, by: "client_id" }));
        assert_eq!(g.check("c2", ip(1), t), Ok(()), "another client id is not affected");
        assert_eq!(g.check("c1", ip(1), t + Duration::from_secs(10)), Ok(()), "one attempt back after 10 s");
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_whatever_the_client_id() {
        let g = LoginGuard::new(LoginSettings {
            failures_per_address: 2,
            failure_window: Duration::from_secs(60),
            ..LoginSettings::default()
        });
        let t = Instant::now();
        g.failed("guess-1", ip(2), t);
        g.failed("guess-2", ip(2), t);
        assert!(matches!(g.check("guess-3", ip(2), t), Err(LoginRefusal::Limited { by: "address", .. })));
        assert_eq!(g.check("guess-3", ip(1), t), Ok(()), "another address is not affected");
    }

    #[tokio::test]
    async fn the_hashing_budget_admits_its_concurrency_and_queues_the_rest_within_bounds() {
        let g = LoginGuard::new(LoginSettings { concurrency: 1, queue: 0, ..LoginSettings::default() });
        let first = g.turn().await.expect("a free turn");
        assert_eq!(g.turn().await.err(), Some(LoginRefusal::Busy), "no queue: refused at once");
        drop(first);
        assert!(g.turn().await.is_ok(), "the turn came back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_login_is_refused_well_before_the_agent_gives_up_waiting() {
        // Every turn is taken (a hash that does not end): the queued login is refused with a 503
        // after WAIT, on tokio's paused clock, so within half the time an offline agent waits for
        // its whole request (the token, then the request itself).
        let g = LoginGuard::default();
        let held = g.turn().await.expect("a free turn");
        let started = tokio::time::Instant::now();
        assert_eq!(g.turn().await.err(), Some(LoginRefusal::Busy));
        let waited = started.elapsed();
        let agent = openmvs_agent::AgentConfig::new("http://127.0.0.1:1", "c", "s").timeout;
        assert!(waited >= WAIT && waited <= agent / 2, "refused after {waited:?}; the agent waits {agent:?}");
        drop(held);
        assert!(g.turn().await.is_ok(), "the turn came back");
    }

    #[test]
    fn the_limiter_keeps_its_memory_bounded() {
        let l = FailureLimiter::new(1, Duration::from_secs(3600));
        let t = Instant::now();
        for i in 0..(MAX_KEYS + 10) {
            l.fail(&format!("k{i}"), t + Duration::from_micros(i as u64));
        }
        assert!(l.map.lock().unwrap().len() <= MAX_KEYS);
    }
}
