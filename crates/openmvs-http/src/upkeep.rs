//! What every node does besides answering requests, for the console: it samples its readiness
//! for the availability figure, writes its SLA figures to the store's history, and applies the
//! incident rules. One loop per node; each step can also be called alone, which is how tests
//! drive it with a fake clock.

use std::sync::Arc;
use std::time::Duration;

use openmvs_core::time::Timestamp;
use openmvs_hub::Hub;
use openmvs_national::National;
use openmvs_store::{BoxFuture, QueueCounts};
use openmvs_telemetry::OpClass;
use tokio::sync::watch;

use crate::history::{FLUSH_EVERY, SlaHistory};
use crate::incidents::{RULES_EVERY, RuleConfig, Seen, Watch};
use crate::observe::Observability;

/// How often readiness is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What the upkeep of one system reads of it.
pub trait Watched: Send + Sync {
    /// Whether the store commits (the last probe write or commit succeeded).
    fn store_ok(&self) -> bool;
    /// The system's outbox queues (None when the store cannot say).
    fn queues(&self) -> BoxFuture<'_, Option<Vec<QueueCounts>>>;
    /// Markets the hub's deliveries fail to reach, with since when (a national system: none).
    fn unreachable(&self) -> Vec<(String, Timestamp)> {
        Vec::new()
    }
}

impl Watched for National {
    fn store_ok(&self) -> bool {
        National::store_ok(self)
    }
    fn queues(&self) -> BoxFuture<'_, Option<Vec<QueueCounts>>> {
        Box::pin(async move { self.outbox_queues().await.ok() })
    }
}

impl Watched for Hub {
    fn store_ok(&self) -> bool {
        Hub::store_ok(self)
    }
    fn queues(&self) -> BoxFuture<'_, Option<Vec<QueueCounts>>> {
        Box::pin(async move { self.outbox_queues().await.ok() })
    }
    fn unreachable(&self) -> Vec<(String, Timestamp)> {
        self.unreachable_since()
    }
}

/// One node's console upkeep.
pub struct Upkeep {
    obs: Arc<Observability>,
    history: SlaHistory,
    watch: Watch,
    system: Arc<dyn Watched>,
}

/// This machine's name with the node's port: what names a node in the incident rules, the same
/// across its restarts.
pub fn node_label(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{port}")
}

impl Upkeep {
    /// The upkeep of a national system's node.
    pub fn national(
        obs: Arc<Observability>,
        national: Arc<National>,
        label: &str,
        rules: RuleConfig,
    ) -> Upkeep {
        let store: Arc<dyn openmvs_store::ConsoleStore> = national.store().clone();
        Upkeep {
            history: crate::national::history_of(&national),
            watch: Watch::new(store, national.market().as_str(), label, rules),
            obs,
            system: national,
        }
    }

    /// The upkeep of a hub node.
    pub fn hub(obs: Arc<Observability>, hub: Arc<Hub>, label: &str, rules: RuleConfig) -> Upkeep {
        let store: Arc<dyn openmvs_store::ConsoleStore> = hub.store().clone();
        Upkeep {
            history: crate::hub_status::history_of(&hub),
            watch: Watch::new(store, crate::hub_status::HUB_SCOPE, label, rules),
            obs,
            system: hub,
        }
    }

    /// Samples readiness: what `/health/ready` would answer.
    pub fn sample(&self) {
        let ready = self.obs.is_ready() && self.system.store_ok();
        let now = self.obs.clock.now();
        self.obs.sla.record_availability(now.unix_millis(), ready);
        self.watch.readiness(ready, now);
    }

    /// Writes this node's figures to the history.
    pub async fn flush(&self) {
        if let Err(e) = self.history.flush(&self.obs).await {
            tracing::warn!(error = %e, "writing the SLA figures to the store failed; they are written at the next try");
        }
    }

    /// What the rules see now.
    pub async fn seen(&self) -> Seen {
        let now = self.obs.clock.now();
        let minutes = self.watch.config().window_minutes;
        let window = [OpClass::Verification, OpClass::StatusUpdate]
            .into_iter()
            .map(|c| {
                let (count, under) = self.obs.sla.window(c, now.unix_millis(), minutes);
                (c, count, under)
            })
            .collect();
        let ready = self.obs.is_ready() && self.system.store_ok();
        Seen {
            window,
            not_ready_since: self.watch.readiness(ready, now),
            dead_letters: self.system.queues().await.map(|q| q.iter().map(|q| q.dead).sum()),
            unreachable: self.system.unreachable(),
        }
    }

    /// Applies the incident rules; returns the incidents opened and resolved.
    pub async fn rules(&self) -> (Vec<u64>, Vec<u64>) {
        let seen = self.seen().await;
        match self.watch.apply(&seen, self.obs.clock.now()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "applying the incident rules failed; they are applied at the next try");
                (Vec::new(), Vec::new())
            }
        }
    }

    /// Runs until `stop`: samples every [`SAMPLE_EVERY`], writes the figures every
    /// [`FLUSH_EVERY`] and applies the rules every [`RULES_EVERY`]; writes the figures once more
    /// when stopped.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // The first samples and rules come one period after the start: a node still starting is
        // not ready, which is no outage.
        let start = tokio::time::Instant::now();
        let mut sample = tokio::time::interval_at(start + SAMPLE_EVERY, SAMPLE_EVERY);
        let mut flush = tokio::time::interval_at(start + FLUSH_EVERY, FLUSH_EVERY);
        let mut rules = tokio::time::interval_at(start + RULES_EVERY, RULES_EVERY);
        for i in [&mut sample, &mut flush, &mut rules] {
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = sample.tick() => self.sample(),
                _ = flush.tick() => self.flush().await,
                _ = rules.tick() => { self.rules().await; }
                _ = stop.changed() => break,
            }
        }
        self.flush().await;
    }
}
