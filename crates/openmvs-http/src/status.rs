//! `/status`: the DR Art 35 figures as JSON for machines and as a page with charts for people.

use openmvs_core::time::{Date, Timestamp};
use openmvs_telemetry::{OpClass, OpSla};
use serde::Serialize;

use crate::observe::Observability;

/// The figures of one operation class.
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
}

/// Both operation classes the regulation reports on.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Operations {
    /// Verifications.
    pub verification: OpFigures,
    /// Status updates (decommissioning and undo).
    pub status_update: OpFigures,
}

/// An incident notice.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    /// When it began.
    #[schema(value_type = openmvs_wire::schema::Time)]
    pub started_at: String,
    /// When it ended; null while it lasts.
    #[schema(required = true, value_type = Option<openmvs_wire::schema::Time>)]
    pub ended_at: Option<String>,
    /// Summary.
    pub title: String,
    /// Details.
    pub detail: String,
}

/// One day of one class, for the charts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DayPoint {
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub date: String,
    /// `verification` or `status_update`.
    #[schema(value_type = String, pattern = "^(verification|status_update)$")]
    pub class: &'static str,
    /// Requests.
    pub count: u64,
    /// Share under 300 ms.
    #[schema(minimum = 0, maximum = 1)]
    pub share_under_300ms: f64,
    /// Mean in milliseconds.
    pub mean_ms: f64,
}

/// One calendar month of one class, for the monthly table.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonthPoint {
    /// `YYYY-MM` (UTC).
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}$")]
    pub month: String,
    /// `verification` or `status_update`.
    #[schema(value_type = String, pattern = "^(verification|status_update)$")]
    pub class: &'static str,
    /// Requests.
    pub count: u64,
    /// Share under 300 ms (1.0 with no requests).
    #[schema(minimum = 0, maximum = 1)]
    pub share_under_300ms: f64,
    /// Mean in milliseconds; null with no requests.
    #[schema(required = true)]
    pub mean_ms: Option<f64>,
}

/// The body of `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(examples(json!({"market": "DE", "availability_30d": 0.9999,
    "operations": {"verification": {"share_under_300ms_month": 0.9998, "mean_ms_30d": 3.2, "count_month": 12345},
                   "status_update": {"share_under_300ms_month": 0.9995, "mean_ms_30d": 10.6, "count_month": 4567}},
    "incidents": [],
    "days": [{"date": "2026-12-06", "class": "verification", "count": 412, "share_under_300ms": 1.0, "mean_ms": 2.9}],
    "months": [{"month": "2026-12", "class": "verification", "count": 12345, "share_under_300ms": 0.9998, "mean_ms": 3.1}]})))]
pub struct StatusReport {
    /// The market.
    #[schema(value_type = openmvs_wire::schema::Market)]
    pub market: String,
    /// Share of minutes ready over the last 30 days.
    #[schema(minimum = 0, maximum = 1)]
    pub availability_30d: f64,
    /// Figures per operation class.
    pub operations: Operations,
    /// Recent incidents.
    pub incidents: Vec<IncidentView>,
    /// Daily figures of the last 30 days, oldest first.
    pub days: Vec<DayPoint>,
    /// Monthly figures of the months the node holds (this month and the one before), oldest
    /// first, as the monthly DR Art 35 report gives them.
    pub months: Vec<MonthPoint>,
}

fn figures(o: &OpSla) -> OpFigures {
    OpFigures {
        share_under_300ms_month: o.share_under_300ms_month,
        mean_ms_30d: o.mean_ms_30d,
        count_month: o.count_month,
    }
}

/// The current report.
pub fn report(obs: &Observability, market: &str) -> StatusReport {
    let now = obs.clock.now().unix_millis();
    let r = obs.sla.report(now);
    let today = Timestamp::from_unix_millis(now).date().days_since_epoch();
    let snapshot = obs.sla.snapshot(now);
    let months = months(&snapshot.days);
    let mut days: Vec<DayPoint> = snapshot
        .days
        .into_iter()
        .filter(|d| d.day > today - 30 && d.count > 0)
        .map(|d| DayPoint {
            date: Date::from_days_since_epoch(d.day).to_string(),
            class: d.class.as_str(),
            count: d.count,
            share_under_300ms: d.under_300ms as f64 / d.count as f64,
            mean_ms: d.sum_micros as f64 / d.count as f64 / 1000.0,
        })
        .collect();
    days.sort_by(|a, b| (&a.date, a.class).cmp(&(&b.date, b.class)));
    StatusReport {
        market: market.to_owned(),
        availability_30d: r.availability_30d,
        operations: Operations {
            verification: figures(&r.verification),
            status_update: figures(&r.status_update),
        },
        incidents: r
            .incidents
            .iter()
            .map(|i| IncidentView {
                started_at: Timestamp::from_unix_millis(i.started_at_millis).to_rfc3339(),
                ended_at: i.ended_at_millis.map(|e| Timestamp::from_unix_millis(e).to_rfc3339()),
                title: i.title.clone(),
                detail: i.detail.clone(),
            })
            .collect(),
        days,
        months,
    }
}

/// The days' figures summed per calendar month and class, oldest month first.
fn months(days: &[openmvs_telemetry::DayFigures]) -> Vec<MonthPoint> {
    let mut by: std::collections::BTreeMap<(i32, u8, &'static str), (u64, u64, u64)> =
        std::collections::BTreeMap::new();
    for d in days {
        let date = Date::from_days_since_epoch(d.day);
        let e = by.entry((date.year(), date.month(), d.class.as_str())).or_default();
        e.0 += d.count;
        e.1 += d.under_300ms;
        e.2 += d.sum_micros;
    }
    by.into_iter()
        .map(|((year, month, class), (count, under, sum))| MonthPoint {
            month: format!("{year:04}-{month:02}"),
            class,
            count,
            share_under_300ms: if count == 0 { 1.0 } else { under as f64 / count as f64 },
            mean_ms: (count > 0).then(|| sum as f64 / count as f64 / 1000.0),
        })
        .collect()
}

/// The monthly table: one row per month, both classes side by side.
fn month_table(r: &StatusReport) -> String {
    let mut months: Vec<&str> = r.months.iter().map(|m| m.month.as_str()).collect();
    months.dedup();
    if months.is_empty() {
        return "<p class=\"empty\">No requests yet.</p>".into();
    }
    let cell = |month: &str, class: OpClass| match r
        .months
        .iter()
        .find(|m| m.month == month && m.class == class.as_str())
    {
        Some(m) => format!(
            "<td>{:.3} %</td><td>{}</td><td>{}</td>",
            m.share_under_300ms * 100.0,
            m.mean_ms.map_or("-".to_owned(), |v| format!("{v:.1} ms")),
            m.count
        ),
        None => "<td>-</td><td>-</td><td>0</td>".to_owned(),
    };
    let rows: String = months
        .iter()
        .rev()
        .map(|m| {
            format!(
                "<tr><th scope=\"row\">{m}</th>{}{}</tr>",
                cell(m, OpClass::Verification),
                cell(m, OpClass::StatusUpdate)
            )
        })
        .collect();
    format!(
        "<table><thead><tr><th scope=\"col\" rowspan=\"2\">month</th><th scope=\"colgroup\" colspan=\"3\">verifications</th>\
<th scope=\"colgroup\" colspan=\"3\">status updates</th></tr><tr><th scope=\"col\">under 300 ms</th><th scope=\"col\">mean</th>\
<th scope=\"col\">requests</th><th scope=\"col\">under 300 ms</th><th scope=\"col\">mean</th><th scope=\"col\">requests</th></tr></thead>\
<tbody>{rows}</tbody></table>"
    )
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A bar chart of one class's daily share under 300 ms, as inline SVG.
fn chart(r: &StatusReport, class: OpClass) -> String {
    let points: Vec<&DayPoint> = r.days.iter().filter(|d| d.class == class.as_str()).collect();
    if points.is_empty() {
        return "<p class=\"empty\">No requests in the last 30 days.</p>".into();
    }
    let (w, h, bw) = (600.0, 120.0, 600.0 / 30.0);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"daily share under 300 ms\" width=\"100%\">",
        h + 20.0
    );
    // The legal floor: 95 % under 300 ms.
    let floor = h * (1.0 - 0.95);
    svg.push_str(&format!("<line x1=\"0\" x2=\"{w}\" y1=\"{floor}\" y2=\"{floor}\" class=\"floor\"/>"));
    let offset = 30 - points.len();
    for (i, p) in points.iter().enumerate() {
        let bar = h * p.share_under_300ms;
        let x = (offset + i) as f64 * bw;
        svg.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\"><title>{}: {:.3}% under 300 ms, mean {:.1} ms, {} requests</title></rect>",
            h - bar,
            bw - 2.0,
            p.date,
            p.share_under_300ms * 100.0,
            p.mean_ms,
            p.count
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn row(name: &str, f: &OpFigures) -> String {
    format!(
        "<tr><th>{name}</th><td>{:.3} %</td><td>{}</td><td>{}</td></tr>",
        f.share_under_300ms_month * 100.0,
        f.mean_ms_30d.map_or("-".to_owned(), |m| format!("{m:.1} ms")),
        f.count_month
    )
}

/// The status page for people.
pub fn html(r: &StatusReport) -> String {
    let incidents = if r.incidents.is_empty() {
        "<p>No incidents.</p>".to_owned()
    } else {
        r.incidents
            .iter()
            .map(|i| {
                format!(
                    "<li><strong>{}</strong> since {}{}<br>{}</li>",
                    escape(&i.title),
                    i.started_at,
                    i.ended_at.as_ref().map_or(" (ongoing)".to_owned(), |e| format!(", resolved {e}")),
                    escape(&i.detail)
                )
            })
            .collect::<Vec<_>>()
            .join("")
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>OpenMVS {m} status</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}\
table{{border-collapse:collapse}}td,th{{padding:.3rem .8rem;text-align:left}}rect{{fill:#2a7}}\
.floor{{stroke:#c33;stroke-dasharray:4}}</style></head><body>\
<h1>OpenMVS national system {m}</h1><p>Availability over 30 days: <strong>{a:.3} %</strong></p>\
<table><tr><th></th><th>under 300 ms this month</th><th>mean over 30 days</th><th>requests this month</th></tr>{v}{s}</table>\
<h2>By month</h2>{mt}<h2>Verifications, daily share under 300 ms</h2>{cv}<h2>Status updates, daily share under 300 ms</h2>{cs}\
<h2>Incidents</h2><ul>{incidents}</ul><p>Machine-readable: <code>GET /status</code> with <code>Accept: application/json</code>.</p></body></html>",
        m = escape(&r.market),
        a = r.availability_30d * 100.0,
        v = row("Verifications", &r.operations.verification),
        s = row("Status updates", &r.operations.status_update),
        mt = month_table(r),
        cv = chart(r, OpClass::Verification),
        cs = chart(r, OpClass::StatusUpdate),
    )
}
