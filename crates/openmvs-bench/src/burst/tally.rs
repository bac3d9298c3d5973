//! What the national system answered, counted on the clients' side: a link that wraps the
//! agent's own ([`ClientUpstream`]) and sorts every reply, so that the figures are what the
//! pharmacies saw. A request the caller gave up waiting for (the agent's timeout drops the
//! future) counts as unanswered.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openmvs_agent::upstream::{BoxFuture, Forward, Forwarded, Reply, Upstream};
use openmvs_core::pack::Command;
use openmvs_http::agent_upstream::ClientUpstream;
use openmvs_wire::api::PackRequest;

/// Replies counted, and the refusals for load per second since `base`.
pub(crate) struct Tally {
    base: Instant,
    /// Requests sent.
    pub(crate) sent: AtomicU64,
    /// Processed (200): accepted or refused by the rules.
    pub(crate) answered: AtomicU64,
    /// Refused before being processed (a 4xx other than 429).
    pub(crate) refused: AtomicU64,
    /// 429 answers.
    pub(crate) limited: AtomicU64,
    /// 503 answers.
    pub(crate) unavailable: AtomicU64,
    /// 429 and 503 answers that carried no `Retry-After`.
    pub(crate) without_retry_after: AtomicU64,
    /// No answer within the client's timeout.
    pub(crate) timeouts: AtomicU64,
    /// Of them, those of a link that had no request processed yet: its login was part of the wait.
    pub(crate) timeouts_first: AtomicU64,
    /// No answer for another reason (a failed connection, a 5xx other than 503, something else).
    pub(crate) failed: AtomicU64,
    /// The first few reasons of requests without an answer.
    pub(crate) failures: Mutex<Vec<String>>,
    /// 429 and 503 answers per second since `base`.
    shed_per_second: Mutex<Vec<u64>>,
}

impl Tally {
    pub(crate) fn new(base: Instant) -> Tally {
        Tally {
            base,
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            without_retry_after: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            timeouts_first: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            shed_per_second: Mutex::new(Vec::new()),
        }
    }

    /// Forgets what was counted (what the agents met while recording, for one).
    pub(crate) fn reset(&self) {
        for c in [
            &self.sent,
            &self.answered,
            &self.refused,
            &self.limited,
            &self.unavailable,
            &self.without_retry_after,
            &self.timeouts,
            &self.timeouts_first,
            &self.failed,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.shed_per_second.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Counts one reply that took `took`, when the client waits `timeout`; whether it was a
    /// refusal for load (429 or 503).
    pub(crate) fn count(&self, reply: &Reply, took: Duration, timeout: Duration) -> bool {
        match reply {
            // The client's own timeout (the same as the agent's) may end the wait first.
            Reply::Unreachable(why) if took >= timeout.mul_f64(0.95) => {
                self.failure(format!("{why} (after {} ms)", took.as_millis()));
                self.timeouts.fetch_add(1, Ordering::Relaxed)
            }
            Reply::Answered(_) => self.answered.fetch_add(1, Ordering::Relaxed),
            Reply::Refused { .. } => self.refused.fetch_add(1, Ordering::Relaxed),
            Reply::Busy { status, retry_after, .. } => {
                if retry_after.is_none() {
                    self.without_retry_after.fetch_add(1, Ordering::Relaxed);
                }
                let second = self.base.elapsed().as_secs() as usize;
                let mut per = self.shed_per_second.lock().unwrap_or_else(|p| p.into_inner());
                if per.len() <= second {
                    per.resize(second + 1, 0);
                }
                per[second] += 1;
                drop(per);
                let counter = if *status == 429 { &self.limited } else { &self.unavailable };
                counter.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Reply::Unreachable(why) => {
                self.failure(why.clone());
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        false
    }

    fn failure(&self, why: String) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() < 5 {
            f.push(why);
        }
    }

    /// The counts so far, for progress lines.
    pub(crate) fn summary(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "sent {}, answered {}, refused {}, 429 {}, 503 {} ({} without Retry-After), timeouts {} ({} before a first answer), failed {}",
            n(&self.sent),
            n(&self.answered),
            n(&self.refused),
            n(&self.limited),
            n(&self.unavailable),
            n(&self.without_retry_after),
            n(&self.timeouts),
            n(&self.timeouts_first),
            n(&self.failed)
        )
    }

    /// 429 and 503 answers.
    pub(crate) fn shed(&self) -> u64 {
        self.limited.load(Ordering::Relaxed) + self.unavailable.load(Ordering::Relaxed)
    }

    /// Requests without an answer.
    pub(crate) fn unanswered(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    /// The refusals for load of each second since `base`.
    pub(crate) fn shed_per_second(&self) -> Vec<u64> {
        self.shed_per_second.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A link counted in a [`Tally`].
pub(crate) struct Counted {
    inner: ClientUpstream,
    tally: Arc<Tally>,
    /// Whether a request was processed (so the link holds a token).
    processed: AtomicBool,
    /// How long the client waits for an answer.
    timeout: Duration,
}

impl Counted {
    pub(crate) fn new(inner: ClientUpstream, tally: Arc<Tally>, timeout: Duration) -> Counted {
        Counted { inner, tally, processed: AtomicBool::new(false), timeout }
    }

    /// Sends one request and counts its reply, or counts it unanswered after `timeout`.
    pub(crate) async fn send(&self, command: Command, body: &PackRequest, timeout: Duration) -> Reply {
        match tokio::time::timeout(timeout, self.pack(command, body)).await {
            Ok(reply) => reply,
            // Counted by the dropped future's guard.
            Err(_) => Reply::Unreachable(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}

/// Counts a request as unanswered unless its reply was counted.
struct Pending<'a> {
    tally: &'a Tally,
    first: bool,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.tally.timeouts.fetch_add(1, Ordering::Relaxed);
            if self.first {
                self.tally.timeouts_first.fetch_add(1, Ordering::Relaxed);
            }
            self.tally.failure("no answer within the client's timeout".to_owned());
        }
    }
}

impl Upstream for Counted {
    fn pack(&self, command: Command, body: &PackRequest) -> BoxFuture<'_, Reply> {
        let body = body.clone();
        Box::pin(async move {
            self.tally.sent.fetch_add(1, Ordering::Relaxed);
            let first = !self.processed.load(Ordering::Relaxed);
            let mut pending = Pending { tally: &self.tally, first, done: false };
            let sent = Instant::now();
            let reply = self.inner.pack(command, &body).await;
            pending.done = true;
            let timeouts = self.tally.timeouts.load(Ordering::Relaxed);
            self.tally.count(&reply, sent.elapsed(), self.timeout);
            if first && self.tally.timeouts.load(Ordering::Relaxed) > timeouts {
                self.tally.timeouts_first.fetch_add(1, Ordering::Relaxed);
            }
            if matches!(reply, Reply::Answered(_) | Reply::Refused { .. }) {
                self.processed.store(true, Ordering::Relaxed);
            }
            reply
        })
    }

    fn forward(&self, request: Forward) -> BoxFuture<'_, Result<Forwarded, String>> {
        self.inner.forward(request)
    }
}
