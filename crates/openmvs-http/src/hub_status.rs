//! The hub's `/status`: every market it distributes to, with whether it answers, how long a
//! delivery takes, and the backlog waiting for it and its age; the OBPs' callback queues; and the
//! hub's own figures. JSON for machines, a page for people, like a national system's `/status`.

use openmvs_core::time::Timestamp;
use openmvs_hub::{Hub, MarketStatus};
use openmvs_store::QueueCounts;
use serde::Serialize;

use crate::observe::Observability;
use crate::status::escape;

/// One destination's queue at the hub.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    /// Messages waiting for delivery.
    pub backlog: u64,
    /// Of those, the ones whose last attempt failed (waiting for a retry).
    pub failing: u64,
    /// Dead letters, waiting for an operator (`openmvs admin dead-letters`).
    pub dead_letters: u64,
    /// When the oldest waiting message was committed; null with no backlog.
    #[schema(required = true, value_type = Option<openmvs_wire::schema::Time>)]
    pub oldest_waiting_since: Option<String>,
    /// How long the oldest waiting message has waited, in seconds; null with no backlog.
    #[schema(required = true)]
    pub oldest_waiting_seconds: Option<u64>,
}

/// One market on the hub's status page.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MarketView {
    /// The market.
    #[schema(value_type = openmvs_wire::schema::Market)]
    pub market: String,
    /// `reachable` (its last delivery got through), `unreachable` (its last delivery failed), or
    /// `unknown` (this node has sent it nothing since it started).
    #[schema(pattern = "^(reachable|unreachable|unknown)$")]
    pub reachability: &'static str,
    /// When a delivery last got through; null if none since this node started.
    #[schema(required = true, value_type = Option<openmvs_wire::schema::Time>)]
    pub last_delivery_at: Option<String>,
    /// How long that delivery took, in milliseconds.
    #[schema(required = true)]
    pub last_delivery_ms: Option<u64>,
    /// When a delivery last failed; null if none since this node started.
    #[schema(required = true, value_type = Option<openmvs_wire::schema::Time>)]
    pub last_failure_at: Option<String>,
    /// Why it failed.
    #[schema(required = true)]
    pub last_failure: Option<String>,
    /// Deliveries that failed since the last one that got through.
    pub failures_since_delivery: u32,
    /// What waits to be distributed to it.
    pub distribution: QueueView,
}

/// An OBP's callback queue.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CallbackView {
    /// The OBP.
    pub obp: String,
    /// Its events waiting to be posted.
    pub queue: QueueView,
}

/// The hub's own figures.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HubFigures {
    /// Whether this node is ready (started, not draining, its store commits).
    pub ready: bool,
    /// Share of minutes this node was ready over the last 30 days.
    #[schema(minimum = 0, maximum = 1)]
    pub availability_30d: f64,
    /// Messages waiting, every destination.
    pub backlog: u64,
    /// Dead letters, every destination.
    pub dead_letters: u64,
    /// Alerts not closed, by status.
    pub open_alerts: std::collections::BTreeMap<String, u64>,
}

/// The body of the hub's `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(examples(json!({
    "generated_at": "2026-12-06T10:00:00.000Z",
    "hub": {"ready": true, "availability_30d": 0.9999, "backlog": 12, "dead_letters": 0,
            "open_alerts": {"OPEN": 2, "INVESTIGATING": 0, "ESCALATED": 0}},
    "markets": [{"market": "DE", "reachability": "reachable", "last_delivery_at": "2026-12-06T09:59:58.120Z",
                 "last_delivery_ms": 14, "last_failure_at": null, "last_failure": null, "failures_since_delivery": 0,
                 "distribution": {"backlog": 0, "failing": 0, "dead_letters": 0,
                                  "oldest_waiting_since": null, "oldest_waiting_seconds": null}}],
    "callbacks": []})))]
pub struct HubStatusReport {
    /// When this report was made.
    #[schema(value_type = openmvs_wire::schema::Time)]
    pub generated_at: String,
    /// The hub's own figures.
    pub hub: HubFigures,
    /// Every market, in code order, as this node's relay sees it.
    pub markets: Vec<MarketView>,
    /// The OBPs' callback queues that hold anything.
    pub callbacks: Vec<CallbackView>,
}

fn queue(q: &QueueCounts, now: Timestamp) -> QueueView {
    QueueView {
        backlog: q.pending,
        failing: q.failing,
        dead_letters: q.dead,
        oldest_waiting_since: q.oldest_at.map(Timestamp::to_rfc3339),
        oldest_waiting_seconds: q.oldest_at.map(|t| now.since(t).as_secs()),
    }
}

fn market(m: &MarketStatus, now: Timestamp) -> MarketView {
    let l = &m.link;
    MarketView {
        market: m.market.clone(),
        reachability: match l.reachable() {
            Some(true) => "reachable",
            Some(false) => "unreachable",
            None => "unknown",
        },
        last_delivery_at: l.delivered_at.map(Timestamp::to_rfc3339),
        last_delivery_ms: l.round_trip_ms,
        last_failure_at: l.failed_at.map(Timestamp::to_rfc3339),
        last_failure: l.error.clone(),
        failures_since_delivery: l.failures,
        distribution: queue(&m.queue, now),
    }
}

/// The current report.
///
/// # Errors
///
/// The store cannot be read.
pub async fn report(
    hub: &Hub,
    obs: &Observability,
) -> Result<HubStatusReport, openmvs_core::error::ApiError> {
    let now = obs.clock.now();
    let (markets, callbacks) = hub.distribution_status().await?;
    let open_alerts = hub.open_alerts().await?.into_iter().map(|(s, n)| (s.as_str().to_owned(), n)).collect();
    let all = markets.iter().map(|m| &m.queue).chain(callbacks.iter());
    let (backlog, dead_letters) = all.fold((0, 0), |(b, d), q| (b + q.pending, d + q.dead));
    Ok(HubStatusReport {
        generated_at: now.to_rfc3339(),
        hub: HubFigures {
            ready: obs.is_ready() && hub.store_ok(),
            availability_30d: obs.sla.report(now.unix_millis()).availability_30d,
            backlog,
            dead_letters,
            open_alerts,
        },
        markets: markets.iter().map(|m| market(m, now)).collect(),
        callbacks: callbacks
            .iter()
            .map(|q| CallbackView {
                obp: q.destination.strip_prefix("callback:").unwrap_or(&q.destination).to_owned(),
                queue: queue(q, now),
            })
            .collect(),
    })
}

fn or_dash(v: Option<&str>) -> String {
    v.map_or_else(|| "-".to_owned(), escape)
}

fn age(q: &QueueView) -> String {
    match q.oldest_waiting_seconds {
        None => "-".to_owned(),
        Some(s) if s < 120 => format!("{s} s"),
        Some(s) if s < 7_200 => format!("{} min", s / 60),
        Some(s) => format!("{} h", s / 3_600),
    }
}

/// The status page for people.
pub fn html(r: &HubStatusReport) -> String {
    let markets = if r.markets.is_empty() {
        "<tr><td colspan=\"7\">No market is configured.</td></tr>".to_owned()
    } else {
        r.markets
            .iter()
            .map(|m| {
                format!(
                    "<tr><th scope=\"row\">{}</th><td class=\"{c}\">{c}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&m.market),
                    m.last_delivery_ms.map_or("-".to_owned(), |ms| format!("{ms} ms")),
                    m.distribution.backlog,
                    age(&m.distribution),
                    m.distribution.dead_letters,
                    or_dash(m.last_failure.as_deref()),
                    c = m.reachability,
                )
            })
            .collect::<Vec<_>>()
            .join("")
    };
    let callbacks = if r.callbacks.is_empty() {
        "<p>No callback event waits.</p>".to_owned()
    } else {
        let rows: String = r
            .callbacks
            .iter()
            .map(|c| {
                format!(
                    "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&c.obp),
                    c.queue.backlog,
                    c.queue.failing,
                    age(&c.queue),
                    c.queue.dead_letters
                )
            })
            .collect();
        format!(
            "<table><thead><tr><th scope=\"col\">OBP</th><th scope=\"col\">waiting</th><th scope=\"col\">failing</th>\
<th scope=\"col\">oldest</th><th scope=\"col\">dead letters</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let alerts: String =
        r.hub.open_alerts.iter().map(|(s, n)| format!("{} {n}", escape(s))).collect::<Vec<_>>().join(", ");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>OpenMVS hub status</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
table{{border-collapse:collapse;width:100%}}td,th{{padding:.3rem .8rem;text-align:left;border-bottom:1px solid #ddd}}\
.reachable{{color:#1a6b3a}}.unreachable{{color:#b00020;font-weight:bold}}.unknown{{color:#555}}</style></head><body>\
<h1>OpenMVS European Hub</h1>\
<p>This node is <strong>{ready}</strong>; available {a:.3} % of the last 30 days. Waiting for distribution: \
<strong>{backlog}</strong> messages; dead letters: <strong>{dead}</strong>. Alerts not closed: {alerts}.</p>\
<h2>Markets</h2><table><thead><tr><th scope=\"col\">market</th><th scope=\"col\">link</th><th scope=\"col\">last delivery</th>\
<th scope=\"col\">waiting</th><th scope=\"col\">oldest</th><th scope=\"col\">dead letters</th><th scope=\"col\">last failure</th></tr></thead>\
<tbody>{markets}</tbody></table><h2>Callbacks to OBPs</h2>{callbacks}\
<p>As of {at}, as this node's relay sees the links. Machine-readable: <code>GET /status</code> with \
<code>Accept: application/json</code>.</p></body></html>",
        ready = if r.hub.ready { "ready" } else { "not ready" },
        a = r.hub.availability_30d * 100.0,
        backlog = r.hub.backlog,
        dead = r.hub.dead_letters,
        at = escape(&r.generated_at),
    )
}
