//! How long a status change takes to reach the other side: after the workload, the NMVO of the
//! market that lists an alert moves it to INVESTIGATING at its national system over HTTPS, and
//! the time from that answer until the hub's copy shows the change is taken; then the OBP closes
//! it at the hub over HTTPS, and the time until the market's copy shows CLOSED is taken. The
//! relays run as in a node (woken by each commit); the other side is read in this process every
//! millisecond, so the figures include at most a millisecond of looking.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use openmvs_core::alert::AlertStatus;
use openmvs_core::ids::{AlertId, MarketCode};
use openmvs_workload::tally::Listed;
use serde_json::{Value, json};

use super::setup::{Client, token};
use crate::hub::{ObpConn, Running};
use crate::load::Conn;

/// The most alerts timed, each in both directions.
pub(crate) const MAX_TIMED: usize = 100;
/// How long one change may take to arrive before the run says it did not (generous).
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(60);
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// The times a change took, each way.
#[derive(Debug, Default)]
pub(crate) struct SyncFigures {
    /// NMVO at the national system to the hub's copy.
    pub to_hub: Vec<Duration>,
    /// OBP at the hub to the market's copy.
    pub to_market: Vec<Duration>,
    /// Changes that had not arrived within the deadline.
    pub late: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantile(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort();
    ms(s[((s.len() - 1) as f64 * q).round() as usize])
}

impl SyncFigures {
    pub(crate) fn json(&self) -> Value {
        let side = |v: &[Duration]| {
            json!({"changes": v.len(), "p50_ms": quantile(v, 0.5), "p95_ms": quantile(v, 0.95),
                   "max_ms": quantile(v, 1.0)})
        };
        json!({"nmvo_to_hub": side(&self.to_hub), "obp_to_market": side(&self.to_market), "late": self.late})
    }

    pub(crate) fn print(&self) {
        for (what, v) in [("NMVO -> hub", &self.to_hub), ("OBP -> market", &self.to_market)] {
            crate::out::outln!(
                "openmvs-bench alerts: a status change {what}: {} changes, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
                v.len(),
                quantile(v, 0.5),
                quantile(v, 0.95),
                quantile(v, 1.0)
            );
        }
        if self.late > 0 {
            crate::out::outln!(
                "openmvs-bench alerts: {} status changes had not arrived after {ARRIVAL_DEADLINE:?}",
                self.late
            );
        }
    }
}

/// Waits until `status` shows on the other side; the time it took, or `None` past the deadline.
async fn arrival<F, Fut>(started: Instant, read: F) -> Option<Duration>
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    while started.elapsed() < ARRIVAL_DEADLINE {
        if read().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    None
}

/// Times up to [`MAX_TIMED`] of the `listed` alerts, each way.
pub(crate) async fn measure(
    running: &Running,
    listed: &[Listed],
    nmvos: &BTreeMap<MarketCode, Client>,
    addrs: &BTreeMap<MarketCode, SocketAddr>,
    tls: Arc<rustls::ClientConfig>,
    hub_addr: SocketAddr,
    obp_tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<SyncFigures> {
    let hub = running.hub.clone().context("no hub")?;
    let mut figures = SyncFigures::default();
    let mut seen = BTreeSet::new();
    let mut conns = BTreeMap::new();
    let mut obp = ObpConn::open(hub_addr, obp_tls).await?;
    for a in listed {
        if figures.to_hub.len() + figures.late >= MAX_TIMED {
            break;
        }
        if !seen.insert(a.id.clone()) {
            continue;
        }
        let id = AlertId::from(a.id.as_str());
        let Some(held) = hub.store().alert(&id).await? else { continue };
        if held.status != AlertStatus::Open {
            continue;
        }
        let market = MarketCode::new(&a.market).map_err(|e| anyhow::anyhow!("{}: {e}", a.market))?;
        let (national, addr) = (&running.nationals[&market].0, addrs[&market]);
        let (conn, t) = match conns.entry(market) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let mut conn = Conn::open(addr, "localhost", tls.clone()).await?;
                let nmvo = nmvos.get(&market).with_context(|| format!("no NMVO in {market}"))?;
                let t = token(&mut conn, nmvo).await?;
                e.insert((conn, t))
            }
        };
        let body = serde_json::to_vec(&json!({"status": "INVESTIGATING"}))?;
        let reply = conn.send("POST", &format!("/v1/alerts/{}/status", a.id), Some(t), body).await?;
        if reply.status != 200 {
            bail!(
                "{market}: status change of {}: HTTP {}: {}",
                a.id,
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        let started = Instant::now();
        let at_hub = || async {
            hub.store()
                .alert(&id)
                .await
                .ok()
                .flatten()
                .is_some_and(|x| x.status == AlertStatus::Investigating)
        };
        match arrival(started, at_hub).await {
            Some(d) => figures.to_hub.push(d),
            None => {
                figures.late += 1;
                continue;
            }
        }
        let close = json!({"status": "CLOSED", "classification": "TECHNICAL_ERROR"});
        obp.json("POST", &format!("/v1/alerts/{}/status", a.id), &close).await?;
        let started = Instant::now();
        let at_market = || async {
            national.store().alert(&id).await.ok().flatten().is_some_and(|x| x.status == AlertStatus::Closed)
        };
        match arrival(started, at_market).await {
            Some(d) => figures.to_market.push(d),
            None => figures.late += 1,
        }
    }
    Ok(figures)
}
