//! `/status` and `GET /v1/status`: the DR Art 35 figures of a national system, from its stored
//! history (every node, six months), with its incidents, as JSON for machines and as a page with
//! tables and charts for people.

use openmvs_store::StoreResult;
use openmvs_telemetry::OpClass;
use serde::Serialize;

use crate::history::{DayHistory, Figures, History, MonthHistory, SlaHistory};
use crate::incidents::IncidentView;
use crate::observe::Observability;

/// The headline figures of one operation class.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OpFigures {
    /// Share of this month's requests answered in under 300 ms (1.0 with no requests).
    #[schema(minimum = 0, maximum = 1)]
    pub share_under_300ms_month: f64,
    /// Mean response time over 30 days, in milliseconds; null with no requests.
    #[schema(required = true)]
    pub mean_ms_30d: Option<f64>,
    /// Requests this month.
    pub count_month: u64,
    /// This month's 95th percentile, in milliseconds (see [`Figures::p95_ms`]); null with no
    /// requests.
    #[schema(required = true)]
    pub p95_ms_month: Option<f64>,
    /// This month's 99th percentile, in milliseconds; null with no requests.
    #[schema(required = true)]
    pub p99_ms_month: Option<f64>,
}

/// Both operation classes the regulation reports on.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Operations {
    /// Verifications.
    pub verification: OpFigures,
    /// Status updates (decommissioning and undo).
    pub status_update: OpFigures,
}

/// The body of `GET /status` and `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(examples(json!({"market": "DE", "generated_at": "2026-12-06T10:00:00.000Z", "availability_30d": 0.9999,
    "operations": {"verification": {"share_under_300ms_month": 0.9998, "mean_ms_30d": 3.2, "count_month": 12345,
                                    "p95_ms_month": 7.5, "p99_ms_month": 15.0},
                   "status_update": {"share_under_300ms_month": 0.9995, "mean_ms_30d": 10.6, "count_month": 4567,
                                     "p95_ms_month": 20.0, "p99_ms_month": 50.0}},
    "incidents": [],
    "days": [{"date": "2026-12-06", "availability": 1.0, "classes": {"verification":
        {"requests": 412, "share_under_300ms": 1.0, "mean_ms": 2.9, "p95_ms": 5.0, "p99_ms": 7.5}}}],
    "months": [{"month": "2026-12", "availability": 0.9999, "classes": {
        "verification": {"requests": 12345, "share_under_300ms": 0.9998, "mean_ms": 3.1, "p95_ms": 7.5, "p99_ms": 15.0},
        "status_update": {"requests": 4567, "share_under_300ms": 0.9995, "mean_ms": 10.6, "p95_ms": 20.0, "p99_ms": 50.0}}}]})))]
pub struct StatusReport {
    /// The market.
    #[schema(value_type = openmvs_wire::schema::Market)]
    pub market: String,
    /// When this report was made.
    #[schema(value_type = openmvs_wire::schema::Time)]
    pub generated_at: String,
    /// Ready minutes over observed minutes over the last 30 days, every node (1.0 when nothing
    /// was observed).
    #[schema(minimum = 0, maximum = 1)]
    pub availability_30d: f64,
    /// This month's figures of the two classes DR Art 35 names.
    pub operations: Operations,
    /// Incidents: every unresolved one and the latest resolved ones, newest first.
    pub incidents: Vec<IncidentView>,
    /// Daily figures of the last 30 days, oldest first (days nothing was observed left out).
    pub days: Vec<DayHistory>,
    /// Monthly figures of the last six months, oldest first, as the monthly report gives them.
    pub months: Vec<MonthHistory>,
}

fn op(h: &History, class: OpClass) -> OpFigures {
    let m = h.this_month(class);
    OpFigures {
        share_under_300ms_month: m.share_under_300ms,
        mean_ms_30d: h.mean_ms_30d.get(class.as_str()).copied().flatten(),
        count_month: m.requests,
        p95_ms_month: m.p95_ms,
        p99_ms_month: m.p99_ms,
    }
}

/// The current report.
///
/// # Errors
///
/// The store cannot be read.
pub async fn report(
    obs: &Observability,
    history: &SlaHistory,
    market: &str,
    incidents: Vec<IncidentView>,
) -> StoreResult<StatusReport> {
    let h = history.read(obs).await?;
    Ok(StatusReport {
        market: market.to_owned(),
        generated_at: obs.clock.now().to_rfc3339(),
        availability_30d: h.availability_30d,
        operations: Operations {
            verification: op(&h, OpClass::Verification),
            status_update: op(&h, OpClass::StatusUpdate),
        },
        incidents,
        days: h.days,
        months: h.months,
    })
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| if v < 10.0 { format!("{v:.1} ms") } else { format!("{v:.0} ms") })
}

fn pct(v: f64) -> String {
    format!("{:.3} %", v * 100.0)
}

/// The six-month table: one row per month, verifications and status updates side by side.
pub(crate) fn month_table(months: &[MonthHistory]) -> String {
    let none = Figures { requests: 0, share_under_300ms: 1.0, mean_ms: None, p95_ms: None, p99_ms: None };
    let cells = |m: &MonthHistory, class: OpClass| {
        let f = m.classes.get(class.as_str()).unwrap_or(&none);
        if f.requests == 0 {
            return "<td>-</td><td>-</td><td>-</td><td>0</td>".to_owned();
        }
        format!(
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            pct(f.share_under_300ms),
            ms(f.mean_ms),
            ms(f.p95_ms),
            f.requests
        )
    };
    let rows: String = months
        .iter()
        .rev()
        .map(|m| {
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td>{}{}</tr>",
                escape(&m.month),
                m.availability.map_or("-".to_owned(), pct),
                cells(m, OpClass::Verification),
                cells(m, OpClass::StatusUpdate)
            )
        })
        .collect();
    format!(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"table, scrolls sideways\"><table><caption>The last six months, newest first (UTC)</caption><thead><tr>\
<th scope=\"col\" rowspan=\"2\">month</th><th scope=\"col\" rowspan=\"2\">available</th>\
<th scope=\"colgroup\" colspan=\"4\">verifications</th><th scope=\"colgroup\" colspan=\"4\">status updates</th></tr><tr>\
<th scope=\"col\">under 300 ms</th><th scope=\"col\">mean</th><th scope=\"col\">p95</th><th scope=\"col\">requests</th>\
<th scope=\"col\">under 300 ms</th><th scope=\"col\">mean</th><th scope=\"col\">p95</th><th scope=\"col\">requests</th></tr></thead>\
<tbody>{rows}</tbody></table></div>"
    )
}

/// Bars of a share between 0.9 and 1 (the legal floor of 95 % drawn across), as inline SVG with
/// a text alternative per bar.
fn bars(label: &str, points: &[(String, Option<f64>, String)], slots: usize) -> String {
    let (w, h) = (600.0, 120.0);
    let bw = w / slots as f64;
    let y = |share: f64| h * (1.0 - ((share - 0.9) / 0.1).clamp(0.0, 1.0));
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"{}\" width=\"100%\">",
        h + 4.0,
        escape(label)
    );
    let floor = y(0.95);
    svg.push_str(&format!("<line x1=\"0\" x2=\"{w}\" y1=\"{floor}\" y2=\"{floor}\" class=\"floor\"/>"));
    let offset = slots.saturating_sub(points.len());
    for (i, (name, share, title)) in points.iter().enumerate() {
        let x = (offset + i) as f64 * bw;
        match share {
            Some(s) => svg.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {}</title></rect>",
                y(*s),
                bw - 2.0,
                h - y(*s) + 4.0,
                escape(name),
                escape(title)
            )),
            None => svg.push_str(&format!(
                "<rect class=\"none\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"2\"><title>{}: no requests</title></rect>",
                h + 2.0,
                bw - 2.0,
                escape(name)
            )),
        }
    }
    svg.push_str("</svg>");
    svg
}

fn title_of(f: &Figures) -> String {
    format!(
        "{} under 300 ms, mean {}, p95 {}, {} requests",
        pct(f.share_under_300ms),
        ms(f.mean_ms),
        ms(f.p95_ms),
        f.requests
    )
}

/// The monthly share under 300 ms of one class, six bars.
pub(crate) fn month_chart(months: &[MonthHistory], class: OpClass, label: &str) -> String {
    let points: Vec<(String, Option<f64>, String)> = months
        .iter()
        .map(|m| match m.classes.get(class.as_str()).filter(|f| f.requests > 0) {
            Some(f) => (m.month.clone(), Some(f.share_under_300ms), title_of(f)),
            None => (m.month.clone(), None, String::new()),
        })
        .collect();
    bars(label, &points, months.len().max(1))
}

/// The daily share under 300 ms of one class over the last 30 days.
pub(crate) fn day_chart(days: &[DayHistory], class: OpClass, label: &str) -> String {
    let points: Vec<(String, Option<f64>, String)> = days
        .iter()
        .filter_map(|d| {
            d.classes.get(class.as_str()).map(|f| (d.date.clone(), Some(f.share_under_300ms), title_of(f)))
        })
        .collect();
    if points.is_empty() {
        return "<p class=\"empty\">No requests in the last 30 days.</p>".into();
    }
    bars(label, &points, 30)
}

fn headline(name: &str, f: &OpFigures) -> String {
    format!(
        "<tr><th scope=\"row\">{name}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        pct(f.share_under_300ms_month),
        ms(f.mean_ms_30d),
        ms(f.p95_ms_month),
        f.count_month
    )
}

/// The CSS every status page shares.
pub(crate) const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:62rem;margin:1.5rem auto;padding:0 1rem;\
color:#1a1a1a;line-height:1.45}table{border-collapse:collapse;width:100%}caption{text-align:left;color:#444;padding:.3rem 0}\
td,th{padding:.3rem .6rem;text-align:left;border-bottom:1px solid #ddd}.scroll{overflow-x:auto}rect{fill:#1f7a4d}\
rect.none{fill:#999}.floor{stroke:#b00020;stroke-dasharray:4}.banner{padding:.8rem 1rem;border-radius:.4rem;font-weight:bold}\
.ok{background:#e3f4ea;color:#0f4d2c}.bad{background:#fde7e9;color:#7a0014}.incident{border-left:4px solid #b00020;\
padding:.2rem 1rem;margin:1rem 0}.incident.resolved{border-color:#1f7a4d}.timeline{list-style:none;padding:0}\
.timeline li{margin:.4rem 0}.muted{color:#555}.reachable{color:#1a6b3a}.unreachable{color:#b00020;font-weight:bold}\
.unknown{color:#555}";

/// The status page for people.
pub fn html(r: &StatusReport) -> String {
    let open = r.incidents.iter().filter(|i| i.resolved_at.is_none()).count();
    let banner = if open == 0 {
        "<p class=\"banner ok\">All services are operating normally.</p>".to_owned()
    } else {
        format!(
            "<p class=\"banner bad\">{open} incident{} in progress: see below.</p>",
            if open == 1 { "" } else { "s" }
        )
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>OpenMVS {m} status</title>\
<link rel=\"alternate\" type=\"application/atom+xml\" title=\"Incidents\" href=\"/v1/incidents/feed.atom\">\
<link rel=\"alternate\" type=\"application/feed+json\" title=\"Incidents\" href=\"/v1/incidents/feed.json\">\
<style>{STYLE}</style></head><body><main>\
<h1>OpenMVS national system {m}</h1>{banner}<p>Availability over the last 30 days: <strong>{a}</strong>.</p>\
<table><caption>This month</caption><thead><tr><th scope=\"col\">operation</th><th scope=\"col\">under 300 ms this month</th>\
<th scope=\"col\">mean over 30 days</th><th scope=\"col\">p95 this month</th><th scope=\"col\">requests this month</th></tr></thead>\
<tbody>{v}{s}</tbody></table>\
<h2>By month</h2>{mt}\
<h3>Verifications answered in under 300 ms, by month</h3>{mv}<h3>Status updates answered in under 300 ms, by month</h3>{ms_}\
<h2>The last 30 days</h2><h3>Verifications, daily share under 300 ms</h3>{cv}<h3>Status updates, daily share under 300 ms</h3>{cs}\
<h2>Incidents</h2>{incidents}\
<p class=\"muted\">Figures as of {at} (UTC), from every node of the system. The red line is the legal floor of 95 % \
under 300 ms; the charts start at 90 %. Machine-readable: <a href=\"/v1/status\">/v1/status</a>; incidents as \
<a href=\"/v1/incidents/feed.atom\">Atom</a> and <a href=\"/v1/incidents/feed.json\">JSON Feed</a>.</p></main></body></html>",
        m = escape(&r.market),
        a = pct(r.availability_30d),
        v = headline("Verifications", &r.operations.verification),
        s = headline("Status updates", &r.operations.status_update),
        mt = month_table(&r.months),
        mv = month_chart(&r.months, OpClass::Verification, "monthly share of verifications under 300 ms"),
        ms_ = month_chart(&r.months, OpClass::StatusUpdate, "monthly share of status updates under 300 ms"),
        cv = day_chart(&r.days, OpClass::Verification, "daily share of verifications under 300 ms"),
        cs = day_chart(&r.days, OpClass::StatusUpdate, "daily share of status updates under 300 ms"),
        incidents = crate::incidents::timeline_html(&r.incidents),
        at = escape(&r.generated_at),
    )
}

/// A table of months with every class that had requests in any of them: share under 300 ms,
/// p95 and requests per class.
pub(crate) fn class_month_table(months: &[MonthHistory]) -> String {
    let mut classes: Vec<&str> = months
        .iter()
        .flat_map(|m| m.classes.iter().filter(|(_, f)| f.requests > 0).map(|(k, _)| k.as_str()))
        .collect();
    classes.sort_unstable();
    classes.dedup();
    if classes.is_empty() {
        return "<p class=\"empty\">No requests in the last six months.</p>".into();
    }
    let head: String = classes
        .iter()
        .map(|c| format!("<th scope=\"colgroup\" colspan=\"3\">{}</th>", escape(&c.replace('_', " "))))
        .collect();
    let sub = "<th scope=\"col\">under 300 ms</th><th scope=\"col\">p95</th><th scope=\"col\">requests</th>"
        .repeat(classes.len());
    let rows: String = months
        .iter()
        .rev()
        .map(|m| {
            let cells: String = classes
                .iter()
                .map(|c| match m.classes.get(*c).filter(|f| f.requests > 0) {
                    Some(f) => format!(
                        "<td>{}</td><td>{}</td><td>{}</td>",
                        pct(f.share_under_300ms),
                        ms(f.p95_ms),
                        f.requests
                    ),
                    None => "<td>-</td><td>-</td><td>0</td>".to_owned(),
                })
                .collect();
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td>{cells}</tr>",
                escape(&m.month),
                m.availability.map_or("-".to_owned(), pct)
            )
        })
        .collect();
    format!(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"table, scrolls sideways\"><table><caption>The last six months, newest first (UTC)</caption><thead><tr>\
<th scope=\"col\" rowspan=\"2\">month</th><th scope=\"col\" rowspan=\"2\">available</th>{head}</tr><tr>{sub}</tr></thead>\
<tbody>{rows}</tbody></table></div>"
    )
}
