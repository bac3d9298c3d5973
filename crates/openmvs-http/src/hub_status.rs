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
    /// The incidents in progress that its national system publishes (empty when it has none or
    /// did not answer).
    pub incidents: Vec<openmvs_wire::hub::MarketIncident>,
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
    /// The hub's own API (OBP uploads and queries) this month, per operation class.
    pub this_month: std::collections::BTreeMap<String, crate::history::Figures>,
}

/// The body of the hub's `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(examples(json!({
    "generated_at": "2026-12-06T10:00:00.000Z",
    "hub": {"ready": true, "availability_30d": 0.9999, "backlog": 12, "dead_letters": 0,
            "open_alerts": {"OPEN": 2, "INVESTIGATING": 0, "ESCALATED": 0},
            "this_month": {"bulk": {"requests": 310, "share_under_300ms": 0.98, "mean_ms": 41.0, "p95_ms": 200.0, "p99_ms": 400.0}}},
    "markets": [{"market": "DE", "reachability": "reachable", "last_delivery_at": "2026-12-06T09:59:58.120Z",
                 "last_delivery_ms": 14, "last_failure_at": null, "last_failure": null, "failures_since_delivery": 0,
                 "distribution": {"backlog": 0, "failing": 0, "dead_letters": 0,
                                  "oldest_waiting_since": null, "oldest_waiting_seconds": null},
                 "incidents": []}],
    "callbacks": [], "incidents": [], "days": [], "months": []})))]
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
    /// The hub's incidents: every unresolved one and the latest resolved ones, newest first.
    pub incidents: Vec<crate::incidents::IncidentView>,
    /// The hub's own daily figures of the last 30 days, oldest first.
    pub days: Vec<crate::history::DayHistory>,
    /// The hub's own monthly figures of the last six months, oldest first.
    pub months: Vec<crate::history::MonthHistory>,
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
        incidents: Vec::new(),
    }
}

/// The scope of the hub's own history and incidents.
pub const HUB_SCOPE: &str = "HUB";

/// The hub's SLA history, written and read under this node's id.
pub fn history_of(hub: &Hub) -> crate::history::SlaHistory {
    let store: std::sync::Arc<dyn openmvs_store::ConsoleStore> = hub.store().clone();
    crate::history::SlaHistory::new(store, HUB_SCOPE, hub.node_id().as_str())
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
    let history = history_of(hub).read(obs).await?;
    let store: &dyn openmvs_store::ConsoleStore = hub.store().as_ref();
    let incidents = crate::incidents::for_status(store, &[HUB_SCOPE]).await?;
    let mut market_incidents = hub.market_incidents().await;
    Ok(HubStatusReport {
        generated_at: now.to_rfc3339(),
        hub: HubFigures {
            ready: obs.is_ready() && hub.store_ok(),
            availability_30d: history.availability_30d,
            backlog,
            dead_letters,
            open_alerts,
            this_month: history.months.last().map(|m| m.classes.clone()).unwrap_or_default(),
        },
        markets: markets
            .iter()
            .map(|m| {
                let mut v = market(m, now);
                if let Some(i) = market_incidents.iter().position(|(code, _)| code.as_str() == m.market) {
                    v.incidents = market_incidents.swap_remove(i).1;
                }
                v
            })
            .collect(),
        incidents,
        days: history.days,
        months: history.months,
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
        "<tr><td colspan=\"8\">No market is configured.</td></tr>".to_owned()
    } else {
        r.markets
            .iter()
            .map(|m| {
                format!(
                    "<tr><th scope=\"row\">{}</th><td class=\"{c}\">{c}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&m.market),
                    m.last_delivery_ms.map_or("-".to_owned(), |ms| format!("{ms} ms")),
                    m.distribution.backlog,
                    age(&m.distribution),
                    m.distribution.dead_letters,
                    or_dash(m.last_failure.as_deref()),
                    if m.incidents.is_empty() {
                        "none".to_owned()
                    } else {
                        m.incidents
                            .iter()
                            .map(|i| format!("<strong>{}</strong> ({}, {})", escape(&i.title), escape(&i.status), escape(&i.impact)))
                            .collect::<Vec<_>>()
                            .join("<br>")
                    },
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
    let open = r.incidents.iter().filter(|i| i.resolved_at.is_none()).count()
        + r.markets.iter().map(|m| m.incidents.len()).sum::<usize>()
        + r.markets.iter().filter(|m| m.reachability == "unreachable").count();
    let banner = if open == 0 {
        "<p class=\"banner ok\">Every market is reachable and no incident is in progress.</p>".to_owned()
    } else {
        format!(
            "<p class=\"banner bad\">{open} problem{} in progress: see below.</p>",
            if open == 1 { "" } else { "s" }
        )
    };
    let alerts: String =
        r.hub.open_alerts.iter().map(|(s, n)| format!("{} {n}", escape(s))).collect::<Vec<_>>().join(", ");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>OpenMVS hub status</title>\
<link rel=\"alternate\" type=\"application/atom+xml\" title=\"Incidents\" href=\"/v1/incidents/feed.atom\">\
<style>{style}</style></head><body><main>\
<h1>OpenMVS European Hub</h1>{banner}\
<p>This node is <strong>{ready}</strong>; the hub was available {a:.3} % of the last 30 days. Waiting for distribution: \
<strong>{backlog}</strong> messages; dead letters: <strong>{dead}</strong>. Alerts not closed: {alerts}.</p>\
<h2>Markets</h2><div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"table, scrolls sideways\"><table><thead><tr><th scope=\"col\">market</th><th scope=\"col\">link</th><th scope=\"col\">last delivery</th>\
<th scope=\"col\">waiting</th><th scope=\"col\">oldest</th><th scope=\"col\">dead letters</th><th scope=\"col\">last failure</th>\
<th scope=\"col\">incidents</th></tr></thead><tbody>{markets}</tbody></table></div><h2>Callbacks to OBPs</h2>{callbacks}\
<h2>The hub's own API by month</h2>{months}<h2>Incidents at the hub</h2>{incidents}\
<p class=\"muted\">As of {at}, as this node's relay sees the links. Machine-readable: <a href=\"/v1/status\">/v1/status</a>; \
incidents as <a href=\"/v1/incidents/feed.atom\">Atom</a> and <a href=\"/v1/incidents/feed.json\">JSON Feed</a>.</p></main></body></html>",
        style = crate::status::STYLE,
        banner = banner,
        months = crate::status::class_month_table(&r.months),
        incidents = crate::incidents::timeline_html(&r.incidents),
        ready = if r.hub.ready { "ready" } else { "not ready" },
        a = r.hub.availability_30d * 100.0,
        backlog = r.hub.backlog,
        dead = r.hub.dead_letters,
        at = escape(&r.generated_at),
    )
}
