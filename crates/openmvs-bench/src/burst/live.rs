//! The live traffic during the burst: online pharmacies verifying and dispensing new packs at the
//! market's normal peak, open loop (each operation starts on schedule, whether or not the ones
//! before it were answered), with the latency of every answered request kept per phase: before
//! the replay starts and during it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use openmvs_agent::upstream::{Reply, Upstream};
use openmvs_core::pack::{Command, Operation};
use openmvs_testkit::LOCAL_GTIN;
use openmvs_wire::api::PackRequest;
use serde_json::json;

use super::plan::{EXPIRY, GOOD_BATCH, live_serial};
use super::tally::Counted;

/// Not measured: setting up.
pub(crate) const SETUP: u8 = 0;
/// The system is back; the replay has not started.
pub(crate) const BEFORE: u8 = 1;
/// The replay runs.
pub(crate) const DURING: u8 = 2;
/// The replay is over: no new operation starts.
pub(crate) const AFTER: u8 = 3;

/// The figures of one phase.
pub(crate) struct PhaseFigures {
    answered: u64,
    shed: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl PhaseFigures {
    pub(crate) fn json(&self) -> serde_json::Value {
        json!({"answered": self.answered, "shed": self.shed, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms})
    }

    pub(crate) fn sentence(&self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} answered, {} shed)",
            self.p50_ms, self.p99_ms, self.max_ms, self.answered, self.shed
        )
    }
}

struct Phase {
    latency: Histogram<u64>,
    shed: u64,
}

/// The live pharmacies and what they saw.
pub(crate) struct Live {
    links: Vec<Counted>,
    pool: u64,
    timeout: Duration,
    phase: AtomicU8,
    next: AtomicU64,
    phases: Mutex<[Phase; 2]>,
}

impl Live {
    /// Live pharmacies on `links`, dispensing fresh packs from a pool of `pool` (then only
    /// verifying), each request waiting at most `timeout`.
    pub(crate) fn new(links: Vec<Counted>, pool: u64, timeout: Duration) -> Live {
        let phase = || Phase {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!()),
            shed: 0,
        };
        Live {
            links,
            pool,
            timeout,
            phase: AtomicU8::new(SETUP),
            next: AtomicU64::new(0),
            phases: Mutex::new([phase(), phase()]),
        }
    }

    pub(crate) fn link(&self, i: usize) -> &Counted {
        &self.links[i % self.links.len()]
    }

    pub(crate) fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// Each live pharmacy logs in (a verify of the pool's first pack).
    pub(crate) async fn log_in(&self) -> anyhow::Result<()> {
        for (i, link) in self.links.iter().enumerate() {
            let body = request(format!("LIVE-LOGIN-{i}"), 0);
            match link.pack(Command::Verify, &body).await {
                Reply::Answered(_) => {}
                other => anyhow::bail!("a live pharmacy could not verify: {other:?}"),
            }
        }
        Ok(())
    }

    /// Starts an operation every `2 / rate` seconds (a verify and a dispense: `rate` requests a
    /// second) until the phase is [`AFTER`], then waits for those started.
    pub(crate) async fn run(self: Arc<Self>, rate: f64) {
        let every = Duration::from_secs_f64(2.0 / rate);
        let start = tokio::time::Instant::now();
        let mut ops = tokio::task::JoinSet::new();
        let mut k: u32 = 0;
        while self.phase.load(Ordering::SeqCst) != AFTER {
            tokio::time::sleep_until(start + every * k).await;
            let live = self.clone();
            ops.spawn(async move { live.operation().await });
            k = k.saturating_add(1);
            while ops.try_join_next().is_some() {}
        }
        while ops.join_next().await.is_some() {}
    }

    /// Verifies a fresh pack and dispenses it when it may be (only verifies once the pool is used).
    async fn operation(&self) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let link = self.link(n as usize);
        let fresh = n < self.pool;
        let serial = n % self.pool.max(1);
        let verified = self.timed(link, Command::Verify, &request(format!("LIVE-V-{n}"), serial)).await;
        let dispensable = matches!(&verified, Reply::Answered(a)
            if a.pack.as_ref().is_some_and(|p| p.state == "ACTIVE"));
        if fresh && dispensable {
            self.timed(link, Command::Set(Operation::Supply), &request(format!("LIVE-S-{n}"), serial)).await;
        }
    }

    /// Sends one request and keeps its latency (answered) or counts it (shed) in its phase.
    async fn timed(&self, link: &Counted, command: Command, body: &PackRequest) -> Reply {
        let phase = self.phase.load(Ordering::SeqCst);
        let sent = Instant::now();
        let reply = link.send(command, body, self.timeout).await;
        let took = sent.elapsed();
        let index = match phase {
            BEFORE => 0,
            DURING => 1,
            _ => return reply,
        };
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        match &reply {
            Reply::Answered(_) | Reply::Refused { .. } => {
                let _ = phases[index].latency.record((took.as_micros() as u64).max(1));
            }
            Reply::Busy { .. } => phases[index].shed += 1,
            Reply::Unreachable(_) => {}
        }
        drop(phases);
        reply
    }

    pub(crate) fn figures(&self, phase: u8) -> PhaseFigures {
        let phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        let p = &phases[usize::from(phase == DURING)];
        let ms = |q: f64| p.latency.value_at_quantile(q) as f64 / 1000.0;
        PhaseFigures {
            answered: p.latency.len(),
            shed: p.shed,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: p.latency.max() as f64 / 1000.0,
        }
    }
}

fn request(trx: String, serial: u64) -> PackRequest {
    PackRequest {
        client_trx_id: Some(trx),
        scheme: Some("GTIN".into()),
        product_code: Some(LOCAL_GTIN.into()),
        serial: Some(live_serial(serial)),
        batch: Some(GOOD_BATCH.into()),
        expiry: Some(EXPIRY.into()),
        ..PackRequest::default()
    }
}
