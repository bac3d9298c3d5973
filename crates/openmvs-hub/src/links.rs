//! What this node's relay has seen of each market's link, for the hub's status page: when a
//! delivery last got through and how long it took, when one last failed and why, and how many
//! failed since the last success. Kept in memory per node (another hub node's relay sees the same
//! markets through its own deliveries); the backlog and its age come from the shared store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use openmvs_core::ids::MarketCode;
use openmvs_core::time::Timestamp;
use openmvs_store::QueueCounts;

use crate::{ApiError, Hub};

/// One market's link, as this node's relay saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSeen {
    /// When a delivery last got through.
    pub delivered_at: Option<Timestamp>,
    /// How long that delivery took, in milliseconds of the hub's clock.
    pub round_trip_ms: Option<u64>,
    /// When a delivery last failed.
    pub failed_at: Option<Timestamp>,
    /// Why.
    pub error: Option<String>,
    /// Deliveries that failed since the last one that got through.
    pub failures: u32,
    /// When the first of those failed.
    pub failing_since: Option<Timestamp>,
}

impl LinkSeen {
    /// Whether the market answered the last delivery; `None` before any.
    pub fn reachable(&self) -> Option<bool> {
        if self.failures > 0 { Some(false) } else { self.delivered_at.map(|_| true) }
    }
}

/// Every market's link, by market code.
#[derive(Debug, Default)]
pub(crate) struct Links(Mutex<BTreeMap<String, LinkSeen>>);

impl Links {
    fn with(&self, market: MarketCode, f: impl FnOnce(&mut LinkSeen)) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(market.to_string()).or_default());
    }

    /// A delivery that `market` answered, sent at `sent` and answered at `answered`.
    pub(crate) fn delivered(&self, market: MarketCode, sent: Timestamp, answered: Timestamp) {
        self.with(market, |l| {
            l.delivered_at = Some(answered);
            l.round_trip_ms = Some(u64::try_from(answered.since(sent).as_millis()).unwrap_or(u64::MAX));
            l.failures = 0;
            l.failing_since = None;
        });
    }

    /// A delivery that did not reach `market`.
    pub(crate) fn failed(&self, market: MarketCode, at: Timestamp, error: &str) {
        self.with(market, |l| {
            l.failed_at = Some(at);
            l.error = Some(error.to_owned());
            l.failures = l.failures.saturating_add(1);
            l.failing_since.get_or_insert(at);
        });
    }

    fn all(&self) -> BTreeMap<String, LinkSeen> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One market on the hub's status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketStatus {
    /// The market.
    pub market: String,
    /// Its link, as this node's relay saw it.
    pub link: LinkSeen,
    /// The messages waiting for it, those whose last attempt failed, its dead letters, and when
    /// the oldest waiting one was committed.
    pub queue: QueueCounts,
}

impl Hub {
    /// The markets whose deliveries fail, with when the first failure since the last delivery
    /// that got through happened, as this node's relay saw them.
    pub fn unreachable_since(&self) -> Vec<(String, Timestamp)> {
        self.links.all().into_iter().filter_map(|(m, l)| Some((m, l.failing_since?))).collect()
    }

    /// The incidents in progress at each market the link reaches, asked of each national system
    /// at once; a market that does not answer is left out (its link shows why).
    pub async fn market_incidents(&self) -> Vec<(MarketCode, Vec<openmvs_wire::hub::MarketIncident>)> {
        let Some(link) = &self.link else { return Vec::new() };
        let mut asks = tokio::task::JoinSet::new();
        for m in link.markets() {
            let link = link.clone();
            asks.spawn(async move { (m, link.open_incidents(m).await) });
        }
        let mut out = Vec::new();
        while let Some(done) = asks.join_next().await {
            if let Ok((m, Ok(list))) = done
                && !list.is_empty()
            {
                out.push((m, list));
            }
        }
        out.sort_by_key(|(m, _)| *m);
        out
    }

    /// Every market the hub distributes to (those its link knows, and any with messages), with
    /// its link and its distribution backlog; then the OBPs' callback queues (`callback:<obp>`).
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub async fn distribution_status(&self) -> Result<(Vec<MarketStatus>, Vec<QueueCounts>), ApiError> {
        let queues = self.store.queue_counts().await?;
        let seen = self.links.all();
        let mut markets: BTreeMap<String, MarketStatus> = BTreeMap::new();
        let empty = |market: &str| QueueCounts {
            destination: market.to_owned(),
            pending: 0,
            failing: 0,
            dead: 0,
            oldest_at: None,
        };
        let known = self.link.as_ref().map(|l| l.markets()).unwrap_or_default();
        for market in known.iter().map(MarketCode::to_string).chain(seen.keys().cloned()) {
            let link = seen.get(&market).cloned().unwrap_or_default();
            markets.insert(market.clone(), MarketStatus { queue: empty(&market), link, market });
        }
        let mut callbacks = Vec::new();
        for q in queues {
            if MarketCode::new(&q.destination).is_ok() {
                let market = q.destination.clone();
                let link = seen.get(&market).cloned().unwrap_or_default();
                markets.insert(market.clone(), MarketStatus { market, link, queue: q });
            } else {
                callbacks.push(q);
            }
        }
        Ok((markets.into_values().collect(), callbacks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + ms)
    }

    #[test]
    fn a_link_is_reachable_when_its_last_delivery_got_through() {
        let links = Links::default();
        let de = MarketCode::new("DE").expect("a market");
        assert_eq!(LinkSeen::default().reachable(), None, "never tried");
        links.failed(de, t(0), "connection refused");
        links.failed(de, t(10), "connection refused");
        let l = links.all()["DE"].clone();
        assert_eq!(
            (l.reachable(), l.failures, l.error.as_deref()),
            (Some(false), 2, Some("connection refused"))
        );
        links.delivered(de, t(20), t(27));
        let l = links.all()["DE"].clone();
        assert_eq!((l.reachable(), l.failures, l.round_trip_ms), (Some(true), 0, Some(7)));
        assert_eq!(l.failed_at, Some(t(10)), "the last failure is kept for the page");
    }
}
