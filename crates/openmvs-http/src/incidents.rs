//! Incidents: what the status pages, `GET /v1/incidents` and the Atom and JSON feeds show, what
//! operators open, update and resolve, and the rules that open and resolve them by themselves.
//!
//! # Rules
//!
//! A node looks every [`RULES_EVERY`] at what it can see and keeps one incident open per
//! condition that holds (see [`conditions`]):
//!
//! - `slow:<class>@<node>`: in the last five minutes this node answered fewer than the target share
//!   (95 %) of verifications or status updates in under 300 ms (with at least a handful of
//!   requests, so that one slow request at night is not an incident);
//! - `not_ready@<node>`: the node has not been ready (its store does not commit) for a minute; the
//!   incident is written, with the time it began, as soon as the store takes it;
//! - `dead_letters`: messages have given up and wait for an operator;
//! - `unreachable:<market>` (the hub): deliveries to a market have failed for five minutes.
//!
//! Rules about one node carry the node's name, so that a healthy node does not resolve what a
//! sick one sees; the others are about the whole system, and the store keeps one incident open per
//! rule however many nodes apply it. When a condition no longer holds, the node that can see it
//! resolves the incident with a note.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openmvs_core::error::ApiError;
use openmvs_core::time::Timestamp;
use openmvs_store::{
    ConsoleStore, Impact, IncidentFilter, IncidentNote, IncidentRecord, IncidentStatus, NewIncident,
    StoreResult,
};
use openmvs_telemetry::OpClass;
use serde::{Deserialize, Serialize};

use crate::status::escape;

/// How often a node applies the rules.
pub const RULES_EVERY: Duration = Duration::from_secs(15);
/// The author of what the rules write.
pub const RULE_AUTHOR: &str = "system";

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentUpdateView {
    /// When it was written.
    #[schema(value_type = openmvs_wire::schema::Time)]
    pub at: String,
    /// The incident's status from then on.
    #[schema(pattern = "^(investigating|identified|monitoring|resolved)$")]
    pub status: &'static str,
    /// What was said.
    pub message: String,
    /// `rule` when the system wrote it, `operator` when a person did.
    #[schema(pattern = "^(rule|operator)$")]
    pub by: &'static str,
}

/// An incident as everyone may read it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(examples(json!({"id": 7, "scope": "DE", "title": "Verifications slower than 300 ms on node a",
    "impact": "minor", "status": "resolved", "automatic": true,
    "opened_at": "2026-12-06T10:00:00.000Z", "resolved_at": "2026-12-06T10:20:00.000Z",
    "updates": [
        {"at": "2026-12-06T10:00:00.000Z", "status": "investigating", "message": "81.0 % of 1200 verifications in the last 5 minutes were answered in under 300 ms (target 95 %).", "by": "rule"},
        {"at": "2026-12-06T10:20:00.000Z", "status": "resolved", "message": "Back to normal: 99.9 % under 300 ms in the last 5 minutes.", "by": "rule"}]})))]
pub struct IncidentView {
    /// Its number.
    pub id: u64,
    /// The market code, or `HUB`.
    pub scope: String,
    /// Its title.
    pub title: String,
    /// `minor`, `major` or `critical`.
    #[schema(pattern = "^(minor|major|critical)$")]
    pub impact: &'static str,
    /// The status of its latest update.
    #[schema(pattern = "^(investigating|identified|monitoring|resolved)$")]
    pub status: &'static str,
    /// Whether a rule opened it.
    pub automatic: bool,
    /// When it began.
    #[schema(value_type = openmvs_wire::schema::Time)]
    pub opened_at: String,
    /// When it was resolved; null while it lasts.
    #[schema(required = true, value_type = Option<openmvs_wire::schema::Time>)]
    pub resolved_at: Option<String>,
    /// The timeline, oldest first.
    pub updates: Vec<IncidentUpdateView>,
}

impl From<&IncidentRecord> for IncidentView {
    fn from(r: &IncidentRecord) -> IncidentView {
        IncidentView {
            id: r.id,
            scope: r.scope.clone(),
            title: r.title.clone(),
            impact: r.impact.as_str(),
            status: r.status.as_str(),
            automatic: r.rule.is_some(),
            opened_at: r.opened_at.to_rfc3339(),
            resolved_at: r.resolved_at.map(Timestamp::to_rfc3339),
            updates: r
                .notes
                .iter()
                .map(|n| IncidentUpdateView {
                    at: n.at.to_rfc3339(),
                    status: n.status.as_str(),
                    message: n.message.clone(),
                    by: if n.author == RULE_AUTHOR { "rule" } else { "operator" },
                })
                .collect(),
        }
    }
}

/// A page of incidents.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentList {
    /// Newest first.
    pub incidents: Vec<IncidentView>,
    /// The `cursor` of the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The query of `GET /v1/incidents`, as read from the query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentQuery {
    /// Only incidents not resolved yet.
    pub open: bool,
    /// The `next_cursor` of the page before: only incidents numbered below it.
    pub before: Option<u64>,
    /// At most this many, 1 to 200 (default 50).
    pub limit: usize,
}

impl IncidentQuery {
    /// Reads the query string's parameters.
    ///
    /// # Errors
    ///
    /// An unknown parameter or a value out of its rule (400 naming it).
    pub fn parse(q: &std::collections::HashMap<String, String>) -> Result<IncidentQuery, ApiError> {
        if let Some(k) = q.keys().find(|k| !["open", "limit", "cursor"].contains(&k.as_str())) {
            return Err(ApiError::field(k, "is not a query parameter of this route (open, limit, cursor)"));
        }
        let open = match q.get("open").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(ApiError::field("open", format!("'{v}' is not true or false"))),
        };
        let limit =
            match q.get("limit") {
                None => 50,
                Some(l) => l.parse::<usize>().ok().filter(|l| (1..=200).contains(l)).ok_or_else(|| {
                    ApiError::field("limit", format!("'{l}' is not a number from 1 to 200"))
                })?,
            };
        let before = q
            .get("cursor")
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|_| ApiError::field("cursor", format!("'{c}' is not a cursor of this list")))
            })
            .transpose()?;
        Ok(IncidentQuery { open, before, limit })
    }
}

/// Opening an incident.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Verifications time out for some pharmacies", "impact": "major",
    "message": "Some pharmacies report timeouts; we are investigating."}))]
pub struct OpenIncidentRequest {
    /// A title, 1 to 200 characters.
    pub title: String,
    /// `minor`, `major` or `critical`.
    #[schema(pattern = "^(minor|major|critical)$")]
    pub impact: String,
    /// `investigating` (the default), `identified` or `monitoring`.
    #[serde(default)]
    #[schema(pattern = "^(investigating|identified|monitoring)$")]
    pub status: Option<String>,
    /// What is known, 1 to 4000 characters.
    pub message: String,
}

/// An update of an incident; status `resolved` resolves it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "resolved", "message": "The database was failed over; verifications are fast again."}))]
pub struct IncidentUpdateRequest {
    /// `investigating`, `identified`, `monitoring` or `resolved`.
    #[schema(pattern = "^(investigating|identified|monitoring|resolved)$")]
    pub status: String,
    /// What is new, 1 to 4000 characters.
    pub message: String,
    /// A new impact, when it changed.
    #[serde(default)]
    #[schema(pattern = "^(minor|major|critical)$")]
    pub impact: Option<String>,
}

fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::field(field, "must not be empty or blank"));
    }
    if v.chars().count() > max {
        return Err(ApiError::field(field, format!("must be at most {max} characters")));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::field(field, "must not contain control characters other than line breaks"));
    }
    Ok(v.to_owned())
}

fn impact(field: &str, v: &str) -> Result<Impact, ApiError> {
    Impact::parse(v).ok_or_else(|| ApiError::field(field, format!("'{v}' is not minor, major or critical")))
}

/// Checks an opening and makes it the incident to store, written by `author` at `now`.
///
/// # Errors
///
/// A field breaks its rule (400 naming it).
pub fn new_incident(
    req: &OpenIncidentRequest,
    scope: &str,
    author: &str,
    now: Timestamp,
) -> Result<NewIncident, ApiError> {
    let status = match req.status.as_deref() {
        None => IncidentStatus::Investigating,
        Some(s) => IncidentStatus::parse(s).filter(|s| *s != IncidentStatus::Resolved).ok_or_else(|| {
            ApiError::field("status", format!("'{s}' is not investigating, identified or monitoring"))
        })?,
    };
    Ok(NewIncident {
        scope: scope.to_owned(),
        rule: None,
        title: text("title", &req.title, 200)?,
        impact: impact("impact", &req.impact)?,
        note: IncidentNote {
            at: now,
            status,
            message: text("message", &req.message, 4000)?,
            author: author.to_owned(),
        },
    })
}

/// Checks an update and makes it the note to store, with the new impact if any.
///
/// # Errors
///
/// A field breaks its rule (400 naming it).
pub fn incident_note(
    req: &IncidentUpdateRequest,
    author: &str,
    now: Timestamp,
) -> Result<(IncidentNote, Option<Impact>), ApiError> {
    let status = IncidentStatus::parse(&req.status).ok_or_else(|| {
        ApiError::field(
            "status",
            format!("'{}' is not investigating, identified, monitoring or resolved", req.status),
        )
    })?;
    let impact = req.impact.as_deref().map(|v| impact("impact", v)).transpose()?;
    Ok((
        IncidentNote {
            at: now,
            status,
            message: text("message", &req.message, 4000)?,
            author: author.to_owned(),
        },
        impact,
    ))
}

/// Adds an update to incident `id` of `scope`.
///
/// # Errors
///
/// 404 when the scope has no such incident, 409 when it is resolved already, 503 when the store
/// cannot answer.
pub async fn update(
    store: &dyn ConsoleStore,
    scope: &str,
    id: u64,
    note: IncidentNote,
    impact: Option<Impact>,
) -> Result<IncidentRecord, ApiError> {
    use openmvs_core::return_code::ReturnCode;
    match store.incident(id).await? {
        Some(i) if i.scope == scope => {}
        _ => return Err(ApiError::new(ReturnCode::NotFound).with("id", format!("no incident {id}"))),
    }
    match store.note_incident(id, note, impact).await? {
        Some(i) => Ok(i),
        None => {
            Err(ApiError::new(ReturnCode::StateConflict)
                .with("id", format!("incident {id} is resolved already")))
        }
    }
}

/// A page of `scope`'s incidents, by the query.
///
/// # Errors
///
/// A limit out of range (400), or a store that cannot answer.
pub async fn list(
    store: &dyn ConsoleStore,
    scope: &str,
    q: &IncidentQuery,
) -> Result<IncidentList, ApiError> {
    let limit = q.limit.clamp(1, 200);
    let filter = IncidentFilter { open_only: q.open, before_id: q.before, limit: limit + 1 };
    let mut rows: Vec<IncidentRecord> =
        store.incidents(filter).await?.into_iter().filter(|i| i.scope == scope).collect();
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more { rows.last().map(|i| i.id.to_string()) } else { None };
    Ok(IncidentList { incidents: rows.iter().map(IncidentView::from).collect(), next_cursor })
}

/// One incident of `scope`, by the id in the path.
///
/// # Errors
///
/// 404 when the scope has no incident with this id.
pub async fn one(store: &dyn ConsoleStore, scope: &str, id: &str) -> Result<IncidentView, ApiError> {
    use openmvs_core::return_code::ReturnCode;
    let not_found = || ApiError::new(ReturnCode::NotFound).with("id", format!("no incident '{id}'"));
    let n = id.parse::<u64>().map_err(|_| not_found())?;
    match store.incident(n).await? {
        Some(i) if i.scope == scope => Ok(IncidentView::from(&i)),
        _ => Err(not_found()),
    }
}

/// The URL the caller reached this system at, for the feeds' links: the `Host` it asked for,
/// with the scheme a proxy names in `X-Forwarded-Proto`, else the server's own (`https`, or `http`
/// with `plain_http`).
pub fn base_url(headers: &axum::http::HeaderMap, plain_http: bool) -> String {
    let value =
        |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let host = value("host").filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c)));
    let proto = match value("x-forwarded-proto") {
        Some("http") => "http",
        Some("https") => "https",
        _ if plain_http => "http",
        _ => "https",
    };
    format!("{proto}://{}", host.unwrap_or("localhost"))
}

/// A feed of `scope`'s latest 50 incidents: Atom, or JSON Feed when `json`.
///
/// # Errors
///
/// The store cannot answer.
pub async fn feed(
    store: &dyn ConsoleStore,
    scope: &str,
    title: &str,
    headers: &axum::http::HeaderMap,
    plain_http: bool,
    json: bool,
    now: Timestamp,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let page = list(store, scope, &IncidentQuery { open: false, before: None, limit: 50 }).await?;
    let base = base_url(headers, plain_http);
    let id = format!("urn:openmvs:{}", scope.to_ascii_lowercase());
    Ok(if json {
        (
            [(axum::http::header::CONTENT_TYPE, "application/feed+json")],
            json_feed(title, &base, &id, &page.incidents).to_string(),
        )
            .into_response()
    } else {
        (
            [(axum::http::header::CONTENT_TYPE, "application/atom+xml")],
            atom(title, &base, &id, &page.incidents, now),
        )
            .into_response()
    })
}

/// What a status page shows: every unresolved incident and the ten latest resolved ones, newest
/// first.
///
/// # Errors
///
/// The store cannot answer.
pub async fn for_status(store: &dyn ConsoleStore, scopes: &[&str]) -> StoreResult<Vec<IncidentView>> {
    let open = store.incidents(IncidentFilter { open_only: true, before_id: None, limit: 100 }).await?;
    let latest = store.incidents(IncidentFilter { open_only: false, before_id: None, limit: 50 }).await?;
    let mut rows: Vec<IncidentRecord> = open
        .into_iter()
        .chain(latest.into_iter().filter(|i| i.resolved_at.is_some()).take(10))
        .filter(|i| scopes.contains(&i.scope.as_str()))
        .collect();
    rows.sort_by_key(|i| std::cmp::Reverse(i.id));
    rows.dedup_by_key(|i| i.id);
    Ok(rows.iter().map(IncidentView::from).collect())
}

/// The incidents with their timelines, for a status page.
pub fn timeline_html(incidents: &[IncidentView]) -> String {
    if incidents.is_empty() {
        return "<p>No incidents.</p>".to_owned();
    }
    incidents
        .iter()
        .map(|i| {
            let updates: String = i
                .updates
                .iter()
                .rev()
                .map(|u| {
                    format!(
                        "<li><time datetime=\"{at}\">{at}</time> <strong>{}</strong>{}: {}</li>",
                        u.status,
                        if u.by == "rule" { " (automatic)" } else { "" },
                        escape(&u.message),
                        at = escape(&u.at)
                    )
                })
                .collect();
            format!(
                "<section class=\"incident{r}\" id=\"incident-{id}\" aria-labelledby=\"incident-{id}-title\">\
<h3 id=\"incident-{id}-title\">{title}</h3><p class=\"muted\">{scope} · impact {impact} · {state}</p>\
<ul class=\"timeline\">{updates}</ul></section>",
                r = if i.resolved_at.is_some() { " resolved" } else { "" },
                id = i.id,
                title = escape(&i.title),
                scope = escape(&i.scope),
                impact = i.impact,
                state = match &i.resolved_at {
                    Some(at) => format!("resolved {}", escape(at)),
                    None => format!("{} since {}", i.status, escape(&i.opened_at)),
                },
            )
        })
        .collect()
}

fn xml(s: &str) -> String {
    escape(s).replace('\'', "&apos;")
}

fn summary(i: &IncidentView) -> String {
    i.updates
        .iter()
        .rev()
        .map(|u| format!("{} {}: {}", u.at, u.status, u.message))
        .collect::<Vec<_>>()
        .join("\n")
}

fn updated(i: &IncidentView) -> &str {
    i.updates.last().map_or(i.opened_at.as_str(), |u| u.at.as_str())
}

/// The incidents as an Atom feed (RFC 4287), `base` being the system's URL (e.g.
/// `https://de.example:8443`), newest first.
pub fn atom(title: &str, base: &str, feed_id: &str, incidents: &[IncidentView], now: Timestamp) -> String {
    let updated_at = incidents.iter().map(updated).max().map_or_else(|| now.to_rfc3339(), str::to_owned);
    let entries: String = incidents
        .iter()
        .map(|i| {
            format!(
                "<entry><id>{feed_id}:incident:{id}</id><title>{t}</title><published>{p}</published>\
<updated>{u}</updated><link rel=\"alternate\" type=\"text/html\" href=\"{b}/status#incident-{id}\"/>\
<category term=\"{status}\"/><category term=\"{impact}\"/><summary type=\"text\">{s}</summary></entry>",
                id = i.id,
                t = xml(&format!("[{}] {}", i.status, i.title)),
                p = xml(&i.opened_at),
                u = xml(updated(i)),
                b = xml(base),
                status = i.status,
                impact = i.impact,
                s = xml(&summary(i)),
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\"><id>{feed_id}:incidents</id>\
<title>{t}</title><updated>{u}</updated><author><name>OpenMVS</name></author>\
<link rel=\"self\" type=\"application/atom+xml\" href=\"{b}/v1/incidents/feed.atom\"/>\
<link rel=\"alternate\" type=\"text/html\" href=\"{b}/status\"/>{entries}</feed>\n",
        t = xml(title),
        u = xml(&updated_at),
        b = xml(base),
    )
}

/// The incidents as a JSON Feed 1.1 (jsonfeed.org), newest first.
pub fn json_feed(title: &str, base: &str, feed_id: &str, incidents: &[IncidentView]) -> serde_json::Value {
    serde_json::json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": title,
        "home_page_url": format!("{base}/status"),
        "feed_url": format!("{base}/v1/incidents/feed.json"),
        "items": incidents.iter().map(|i| serde_json::json!({
            "id": format!("{feed_id}:incident:{}", i.id),
            "url": format!("{base}/status#incident-{}", i.id),
            "title": format!("[{}] {}", i.status, i.title),
            "content_text": summary(i),
            "date_published": i.opened_at,
            "date_modified": updated(i),
            "tags": [i.status, i.impact],
            "_openmvs": i,
        })).collect::<Vec<_>>(),
    })
}

/// Thresholds of the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleConfig {
    /// The share that must be answered in under 300 ms.
    pub target: f64,
    /// The window the share is taken over, in minutes.
    pub window_minutes: u32,
    /// Fewer requests than this in the window are too few to judge.
    pub min_requests: u64,
    /// How long a node must be not ready before it is an incident.
    pub not_ready_after: Duration,
    /// How many dead letters open an incident.
    pub dead_letters_at: u64,
    /// How long a market must have been unreachable from the hub.
    pub unreachable_after: Duration,
}

impl Default for RuleConfig {
    fn default() -> RuleConfig {
        RuleConfig {
            target: 0.95,
            window_minutes: 5,
            min_requests: 20,
            not_ready_after: Duration::from_secs(60),
            dead_letters_at: 1,
            unreachable_after: Duration::from_secs(300),
        }
    }
}

/// What a node sees when it applies the rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    /// Requests and requests under 300 ms in the window, per class.
    pub window: Vec<(OpClass, u64, u64)>,
    /// Since when the node has been not ready, if it is not.
    pub not_ready_since: Option<Timestamp>,
    /// Dead letters of the system (None when the store could not say).
    pub dead_letters: Option<u64>,
    /// Markets whose deliveries fail, with when they last got through (or when the node started
    /// trying).
    pub unreachable: Vec<(String, Timestamp)>,
}

/// A condition that holds: the incident a rule keeps open.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The rule's key.
    pub rule: String,
    /// The incident's title.
    pub title: String,
    /// Its impact.
    pub impact: Impact,
    /// The first note.
    pub message: String,
    /// When it began.
    pub since: Timestamp,
}

fn class_name(c: OpClass) -> &'static str {
    match c {
        OpClass::Verification => "Verifications",
        OpClass::StatusUpdate => "Status updates",
        _ => "Requests",
    }
}

/// The conditions that hold for `node`, by `cfg`, at `now`. Pure: the rules as data.
pub fn conditions(seen: &Seen, cfg: &RuleConfig, node: &str, now: Timestamp) -> Vec<Condition> {
    let mut out = Vec::new();
    for &(class, count, under) in &seen.window {
        if count < cfg.min_requests.max(1) {
            continue;
        }
        let share = under as f64 / count as f64;
        if share < cfg.target {
            out.push(Condition {
                rule: format!("slow:{}@{node}", class.as_str()),
                title: format!("{} slower than 300 ms on {node}", class_name(class)),
                impact: if share < 0.5 { Impact::Major } else { Impact::Minor },
                message: format!(
                    "{:.1} % of {count} {} in the last {} minutes were answered in under 300 ms (target {:.0} %).",
                    share * 100.0,
                    class_name(class).to_lowercase(),
                    cfg.window_minutes,
                    cfg.target * 100.0
                ),
                since: now,
            });
        }
    }
    if let Some(since) = seen.not_ready_since
        && now.since(since) >= cfg.not_ready_after
    {
        out.push(Condition {
            rule: format!("not_ready@{node}"),
            title: format!("{node} cannot serve requests"),
            impact: Impact::Major,
            message: format!(
                "{node} has not been ready since {}: its store does not take writes.",
                since.to_rfc3339()
            ),
            since,
        });
    }
    if let Some(n) = seen.dead_letters
        && n >= cfg.dead_letters_at.max(1)
    {
        out.push(Condition {
            rule: "dead_letters".into(),
            title: "Messages are not being delivered".into(),
            impact: Impact::Minor,
            message: format!(
                "{n} messages gave up after their retries and wait for an operator (dead letters)."
            ),
            since: now,
        });
    }
    for (market, since) in &seen.unreachable {
        if now.since(*since) >= cfg.unreachable_after {
            out.push(Condition {
                rule: format!("unreachable:{market}"),
                title: format!("The hub cannot reach {market}"),
                impact: Impact::Major,
                message: format!(
                    "Deliveries to {market} have failed since {}; its packs and alerts wait at the hub.",
                    since.to_rfc3339()
                ),
                since: *since,
            });
        }
    }
    out
}

/// Whether `rule` is one this node applies, and may resolve.
fn applies(rule: &str, node: &str) -> bool {
    rule.strip_suffix(node).is_some_and(|r| r.ends_with('@'))
        || rule == "dead_letters"
        || rule.starts_with("unreachable:")
}

/// One node's application of the rules to its scope.
pub struct Watch {
    store: Arc<dyn ConsoleStore>,
    scope: String,
    node: String,
    cfg: RuleConfig,
    not_ready_since: Mutex<Option<Timestamp>>,
}

impl Watch {
    /// A watch of `scope` by the node named `node` (stable across its restarts: its host and port).
    pub fn new(
        store: Arc<dyn ConsoleStore>,
        scope: impl Into<String>,
        node: impl Into<String>,
        cfg: RuleConfig,
    ) -> Watch {
        Watch { store, scope: scope.into(), node: node.into(), cfg, not_ready_since: Mutex::new(None) }
    }

    /// The thresholds.
    pub fn config(&self) -> &RuleConfig {
        &self.cfg
    }

    /// Notes whether the node is ready now; returns since when it has not been.
    pub fn readiness(&self, ready: bool, now: Timestamp) -> Option<Timestamp> {
        let mut since = self.not_ready_since.lock().unwrap_or_else(|p| p.into_inner());
        if ready {
            *since = None;
        } else if since.is_none() {
            *since = Some(now);
        }
        *since
    }

    /// Applies the rules: opens an incident for each condition that holds and has none open, and
    /// resolves this node's rules' incidents whose condition no longer holds. Returns the incidents
    /// opened and resolved.
    ///
    /// # Errors
    ///
    /// The store cannot answer; the next call tries again.
    pub async fn apply(&self, seen: &Seen, now: Timestamp) -> StoreResult<(Vec<u64>, Vec<u64>)> {
        let holds = conditions(seen, &self.cfg, &self.node, now);
        let (mut opened, mut resolved) = (Vec::new(), Vec::new());
        for c in &holds {
            let (i, created) = self
                .store
                .open_incident(NewIncident {
                    scope: self.scope.clone(),
                    rule: Some(c.rule.clone()),
                    title: c.title.clone(),
                    impact: c.impact,
                    note: IncidentNote {
                        at: c.since,
                        status: IncidentStatus::Investigating,
                        message: c.message.clone(),
                        author: RULE_AUTHOR.into(),
                    },
                })
                .await?;
            if created {
                tracing::warn!(incident = i.id, rule = %c.rule, "incident opened: {}", c.title);
                opened.push(i.id);
            }
        }
        let open =
            self.store.incidents(IncidentFilter { open_only: true, before_id: None, limit: 200 }).await?;
        for i in open {
            let Some(rule) = &i.rule else { continue };
            if i.scope != self.scope || !applies(rule, &self.node) || holds.iter().any(|c| &c.rule == rule) {
                continue;
            }
            // A rule about something this node cannot see right now (the store's dead letters
            // unread) leaves its incident alone.
            if rule == "dead_letters" && seen.dead_letters.is_none() {
                continue;
            }
            let note = IncidentNote {
                at: now,
                status: IncidentStatus::Resolved,
                message: "The condition no longer holds: back to normal.".into(),
                author: RULE_AUTHOR.into(),
            };
            if self.store.note_incident(i.id, note, None).await?.is_some() {
                tracing::info!(incident = i.id, rule = %rule, "incident resolved");
                resolved.push(i.id);
            }
        }
        Ok((opened, resolved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + s * 1000)
    }

    #[test]
    fn a_slow_window_with_enough_requests_is_a_condition_and_a_quiet_one_is_not() {
        let cfg = RuleConfig::default();
        let seen = Seen {
            window: vec![(OpClass::Verification, 100, 90), (OpClass::StatusUpdate, 10, 0)],
            ..Seen::default()
        };
        let c = conditions(&seen, &cfg, "n1", at(0));
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].rule, "slow:verification@n1");
        assert!(c[0].message.contains("90.0 % of 100 verifications"), "{}", c[0].message);
        let fine = Seen { window: vec![(OpClass::Verification, 100, 95)], ..Seen::default() };
        assert!(conditions(&fine, &cfg, "n1", at(0)).is_empty());
    }

    #[test]
    fn not_ready_and_unreachable_need_their_time_and_dead_letters_their_count() {
        let cfg = RuleConfig::default();
        let seen = Seen {
            not_ready_since: Some(at(0)),
            dead_letters: Some(0),
            unreachable: vec![("FR".into(), at(0))],
            ..Seen::default()
        };
        assert!(conditions(&seen, &cfg, "n1", at(59)).is_empty());
        let rules: Vec<String> = conditions(&seen, &cfg, "n1", at(300)).into_iter().map(|c| c.rule).collect();
        assert_eq!(rules, vec!["not_ready@n1", "unreachable:FR"]);
        let dead = Seen { dead_letters: Some(3), ..Seen::default() };
        assert_eq!(conditions(&dead, &cfg, "n1", at(0))[0].rule, "dead_letters");
    }

    #[test]
    fn a_node_resolves_its_own_rules_and_the_systems_not_another_nodes() {
        assert!(applies("slow:verification@n1", "n1"));
        assert!(!applies("slow:verification@n11", "n1"));
        assert!(!applies("not_ready@n2", "n1"));
        assert!(applies("dead_letters", "n1") && applies("unreachable:FR", "n1"));
    }

    #[test]
    fn an_opening_names_the_field_at_fault() {
        let req = |title: &str, impact: &str, status: Option<&str>| OpenIncidentRequest {
            title: title.into(),
            impact: impact.into(),
            status: status.map(str::to_owned),
            message: "m".into(),
        };
        let field = |r: Result<NewIncident, ApiError>| r.unwrap_err().details[0].field.clone();
        assert_eq!(field(new_incident(&req(" ", "minor", None), "DE", "x", at(0))), "title");
        assert_eq!(field(new_incident(&req("t", "huge", None), "DE", "x", at(0))), "impact");
        assert_eq!(field(new_incident(&req("t", "minor", Some("resolved")), "DE", "x", at(0))), "status");
        assert_eq!(field(new_incident(&req(&"x".repeat(201), "minor", None), "DE", "x", at(0))), "title");
        let ok = new_incident(&req(" Slow ", "major", Some("identified")), "DE", "x", at(0)).unwrap();
        assert_eq!(
            (ok.title.as_str(), ok.impact, ok.note.status),
            ("Slow", Impact::Major, IncidentStatus::Identified)
        );
    }

    #[test]
    fn feeds_escape_what_operators_write() {
        let i = IncidentView {
            id: 3,
            scope: "DE".into(),
            title: "<b>A & B</b>".into(),
            impact: "minor",
            status: "investigating",
            automatic: false,
            opened_at: at(0).to_rfc3339(),
            resolved_at: None,
            updates: vec![],
        };
        let a = atom("DE incidents", "https://de.example", "urn:openmvs:DE", std::slice::from_ref(&i), at(1));
        assert!(a.contains("&lt;b&gt;A &amp; B&lt;/b&gt;") && !a.contains("<b>"), "{a}");
        let j = json_feed("DE incidents", "https://de.example", "urn:openmvs:DE", &[i]);
        assert_eq!(j["items"][0]["id"], "urn:openmvs:DE:incident:3");
    }
}
