//! What the operator console keeps besides the pack data, in a national system's store and in
//! the hub's: the service-level history (per day, per operation class, per node) and incidents
//! with their timeline. Neither goes through a unit of work: they describe the service, not a
//! pack, and a node writes them on its own schedule.
//!
//! # SLA history
//!
//! Each node keeps the figures of the days it serves in memory and writes them now and then as
//! one [`SlaNodeDay`] per scope and day, under a node id of its own that no other process uses
//! (a node restarted takes a new one). A write replaces that node's row of that day with absolute
//! figures, so writing twice counts nothing twice; the figures of a system are the sum over its
//! nodes' rows, which every node reads the same.
//!
//! # Incidents
//!
//! An incident has a timeline of notes, the first written when it is opened, the last, when it is
//! resolved, with the status [`IncidentStatus::Resolved`]. An incident opened by a rule carries the
//! rule's key, and while one such incident is unresolved, opening another with the same scope and
//! rule answers the one that is open: several nodes applying the same rule open one incident.

use openmvs_core::time::Timestamp;
use serde_json::{Value, json};

use crate::decode::corrupt;
use crate::{BoxFuture, StoreResult};

/// One operation class's figures of one day on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaClassDay {
    /// The class label, e.g. `verification`.
    pub class: String,
    /// Requests answered.
    pub requests: u64,
    /// Requests answered in strictly less than 300 ms.
    pub under_300ms: u64,
    /// The sum of their latencies, in microseconds.
    pub sum_micros: u64,
    /// Requests per latency bucket; the buckets' bounds are the writer's (the telemetry crate's
    /// `LATENCY_BOUNDS_MICROS`), and a reader sums vectors of the same length.
    pub buckets: Vec<u64>,
}

/// One node's figures of one UTC day in one scope (a market, or the hub).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaNodeDay {
    /// A market code, or `HUB`.
    pub scope: String,
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// The node that counted them (one id per process run).
    pub node: String,
    /// Minutes of that day in which the node sampled its readiness.
    pub observed_minutes: u32,
    /// Observed minutes in which every sample was ready.
    pub ready_minutes: u32,
    /// The figures per operation class.
    pub classes: Vec<SlaClassDay>,
}

/// The service-level history.
pub trait SlaStore: Send + Sync {
    /// Stores each row, replacing the row of the same scope, day and node.
    fn put_sla(&self, rows: Vec<SlaNodeDay>) -> BoxFuture<'_, StoreResult<()>>;
    /// Every node's rows of the days `from_day..=to_day`, by scope, day and node.
    fn sla_days(&self, from_day: i64, to_day: i64) -> BoxFuture<'_, StoreResult<Vec<SlaNodeDay>>>;
}

/// Where an incident stands, as status pages say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentStatus {
    /// Something is wrong and the cause is not known yet.
    Investigating,
    /// The cause is known.
    Identified,
    /// A fix is in place and being watched.
    Monitoring,
    /// Over.
    Resolved,
}

impl IncidentStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [IncidentStatus; 4] = [
        IncidentStatus::Investigating,
        IncidentStatus::Identified,
        IncidentStatus::Monitoring,
        IncidentStatus::Resolved,
    ];

    /// The label stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }

    /// The status labelled `s`.
    pub fn parse(s: &str) -> Option<IncidentStatus> {
        IncidentStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// How much of the service an incident affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Impact {
    /// Some requests are slow or some function is impaired.
    Minor,
    /// A large part of the service is slow or unavailable.
    Major,
    /// The service is down.
    Critical,
}

impl Impact {
    /// Every impact, least first.
    pub const ALL: [Impact; 3] = [Impact::Minor, Impact::Major, Impact::Critical];

    /// The label stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Impact::Minor => "minor",
            Impact::Major => "major",
            Impact::Critical => "critical",
        }
    }

    /// The impact labelled `s`.
    pub fn parse(s: &str) -> Option<Impact> {
        Impact::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentNote {
    /// When it was written.
    pub at: Timestamp,
    /// The incident's status from then on.
    pub status: IncidentStatus,
    /// What was said.
    pub message: String,
    /// Who said it: an operator's client id, or `system` for a rule.
    pub author: String,
}

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRecord {
    /// Its number, from 1, in the order opened.
    pub id: u64,
    /// The market code, or `HUB`.
    pub scope: String,
    /// The rule that opened it, e.g. `slow:verification`; `None` when an operator did.
    pub rule: Option<String>,
    /// Its title.
    pub title: String,
    /// Its impact, as last set.
    pub impact: Impact,
    /// The status of its last note.
    pub status: IncidentStatus,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// When it was resolved.
    pub resolved_at: Option<Timestamp>,
    /// The timeline, oldest first; never empty.
    pub notes: Vec<IncidentNote>,
}

/// An incident to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    /// The market code, or `HUB`.
    pub scope: String,
    /// The rule opening it; `None` for an operator.
    pub rule: Option<String>,
    /// Its title.
    pub title: String,
    /// Its impact.
    pub impact: Impact,
    /// The first note: when, in which status (not resolved), what and by whom.
    pub note: IncidentNote,
}

/// Which incidents to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    /// Only unresolved ones.
    pub open_only: bool,
    /// Only those with an id below this (the next page).
    pub before_id: Option<u64>,
    /// At most this many (0: 50).
    pub limit: usize,
}

impl IncidentFilter {
    /// The limit in effect.
    pub fn limit(&self) -> usize {
        if self.limit == 0 { 50 } else { self.limit }
    }
}

/// Incidents and their timelines.
pub trait IncidentStore: Send + Sync {
    /// Opens an incident, or, when it has a rule and an unresolved incident of the same scope and
    /// rule exists, answers that one; `true` when this call opened it.
    fn open_incident(&self, new: NewIncident) -> BoxFuture<'_, StoreResult<(IncidentRecord, bool)>>;
    /// Adds a note to an unresolved incident (a note in status resolved resolves it), setting its
    /// impact too when given; `None` when no unresolved incident has this id.
    fn note_incident(
        &self,
        id: u64,
        note: IncidentNote,
        impact: Option<Impact>,
    ) -> BoxFuture<'_, StoreResult<Option<IncidentRecord>>>;
    /// One incident.
    fn incident(&self, id: u64) -> BoxFuture<'_, StoreResult<Option<IncidentRecord>>>;
    /// Incidents by filter, newest first.
    fn incidents(&self, filter: IncidentFilter) -> BoxFuture<'_, StoreResult<Vec<IncidentRecord>>>;
}

/// Both, as every national and hub engine stores them.
pub trait ConsoleStore: SlaStore + IncidentStore {}

impl<T: SlaStore + IncidentStore> ConsoleStore for T {}

/// A day's class figures as the JSON text the engines store.
pub fn encode_classes(classes: &[SlaClassDay]) -> String {
    Value::Array(
        classes
            .iter()
            .map(|c| {
                json!({"class": c.class, "requests": c.requests, "under_300ms": c.under_300ms,
                       "sum_micros": c.sum_micros, "buckets": c.buckets})
            })
            .collect(),
    )
    .to_string()
}

/// The class figures [`encode_classes`] wrote.
pub fn decode_classes(text: &str) -> StoreResult<Vec<SlaClassDay>> {
    let bad = || corrupt(format!("SLA figures {text:?}"));
    let v: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let n = |c: &Value, k: &str| c.get(k).and_then(Value::as_u64).ok_or_else(bad);
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|c| {
            Ok(SlaClassDay {
                class: c.get("class").and_then(Value::as_str).ok_or_else(bad)?.to_owned(),
                requests: n(c, "requests")?,
                under_300ms: n(c, "under_300ms")?,
                sum_micros: n(c, "sum_micros")?,
                buckets: c
                    .get("buckets")
                    .and_then(Value::as_array)
                    .ok_or_else(bad)?
                    .iter()
                    .map(|b| b.as_u64().ok_or_else(bad))
                    .collect::<StoreResult<_>>()?,
            })
        })
        .collect()
}

/// One note as the JSON object the engines append to an incident's timeline.
pub fn encode_note(note: &IncidentNote) -> String {
    json!({"at": note.at.unix_millis(), "status": note.status.as_str(), "message": note.message,
           "author": note.author})
    .to_string()
}

/// A timeline (a JSON array of [`encode_note`] objects).
pub fn decode_notes(text: &str) -> StoreResult<Vec<IncidentNote>> {
    let bad = || corrupt(format!("incident timeline {text:?}"));
    let v: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let s = |n: &Value, k: &str| n.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(bad);
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|n| {
            Ok(IncidentNote {
                at: Timestamp::from_unix_millis(n.get("at").and_then(Value::as_i64).ok_or_else(bad)?),
                status: IncidentStatus::parse(&s(n, "status")?).ok_or_else(bad)?,
                message: s(n, "message")?,
                author: s(n, "author")?,
            })
        })
        .collect()
}

/// An incident row as the engines read it: `id, scope, rule, title, impact, status, opened_at,
/// resolved_at, notes`.
#[allow(clippy::too_many_arguments)]
pub fn incident_record(
    id: i64,
    scope: String,
    rule: Option<String>,
    title: String,
    impact: &str,
    status: &str,
    opened_at: i64,
    resolved_at: Option<i64>,
    notes: &str,
) -> StoreResult<IncidentRecord> {
    Ok(IncidentRecord {
        id: u64::try_from(id).map_err(|_| corrupt(format!("incident id {id}")))?,
        scope,
        rule,
        title,
        impact: Impact::parse(impact).ok_or_else(|| corrupt(format!("incident impact {impact:?}")))?,
        status: IncidentStatus::parse(status)
            .ok_or_else(|| corrupt(format!("incident status {status:?}")))?,
        opened_at: Timestamp::from_unix_millis(opened_at),
        resolved_at: resolved_at.map(Timestamp::from_unix_millis),
        notes: decode_notes(notes)?,
    })
}

/// The columns [`incident_record`] reads, in its order, for the engines' `SELECT`s.
pub const INCIDENT_COLUMNS: &str = "id, scope, rule, title, impact, status, opened_at, resolved_at, notes";

/// Which audit records a search reads (see [`crate::AuditStore::audit_search`]). Every
/// criterion given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// The record's subject is one of these (at most [`MAX_SUBJECTS`]; none: any subject).
    pub subjects: Vec<String>,
    /// The record's subject starts with this (e.g. `GTIN/09501101530003/` for a product).
    pub subject_prefix: Option<String>,
    /// Who acted (a client id).
    pub actor: Option<String>,
    /// The premises.
    pub location: Option<String>,
    /// The operation, e.g. `supply`.
    pub operation: Option<String>,
    /// At or after this instant (milliseconds since the epoch).
    pub from_millis: Option<i64>,
    /// Before this instant.
    pub to_millis: Option<i64>,
    /// Positions after this one.
    pub after_pos: u64,
    /// Positions up to this one (a window of the trail), or all.
    pub until_pos: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

/// The most subjects one [`AuditQuery`] names.
pub const MAX_SUBJECTS: usize = 3;

impl AuditQuery {
    /// Whether `r` meets every criterion but the positions.
    pub fn matches(&self, r: &openmvs_audit::Sealed) -> bool {
        let e = &r.entry;
        (self.subjects.is_empty() || self.subjects.contains(&e.subject))
            && self.subject_prefix.as_ref().is_none_or(|p| e.subject.starts_with(p.as_str()))
            && self.actor.as_ref().is_none_or(|a| &e.actor == a)
            && self.location.as_ref().is_none_or(|l| &e.location == l)
            && self.operation.as_ref().is_none_or(|o| &e.operation == o)
            && self.from_millis.is_none_or(|f| e.at_millis >= f)
            && self.to_millis.is_none_or(|t| e.at_millis < t)
    }

    /// The first string after every string starting with `prefix`, for a range scan of the
    /// subject index: `prefix` with its last character moved up by one.
    pub fn prefix_end(prefix: &str) -> String {
        let mut chars: Vec<char> = prefix.chars().collect();
        match chars.pop() {
            Some(c) => {
                let next = char::from_u32(c as u32 + 1).unwrap_or(char::MAX);
                chars.push(next);
                chars.into_iter().collect()
            }
            None => String::from(char::MAX),
        }
    }

    /// The subjects as [`MAX_SUBJECTS`] values (repeating the first), for the engines' `IN`.
    pub fn subject_params(&self) -> [Option<String>; MAX_SUBJECTS] {
        let first = self.subjects.first().cloned();
        std::array::from_fn(|i| self.subjects.get(i).cloned().or_else(|| first.clone()))
    }
}

/// Alerts read from the store at a time while a filtered page is filled.
pub const SCAN_BATCH: usize = 500;
/// Records a filtered page looks at, at most, before it ends with a cursor to go on from: a rare
/// match costs several pages, never one unbounded read.
pub const SCAN_PER_PAGE: usize = 10_000;

/// Fills a page of at most `limit` items from a list read in id order [`SCAN_BATCH`] at a time by
/// `fetch(after)`, keeping what `keep` turns into an item; returns the page and the cursor of the
/// next one: after the last item shown when a further item exists, after the last record looked
/// at when [`SCAN_PER_PAGE`] were looked at first, `None` at the end of the list. Both services'
/// alert lists page so.
///
/// # Errors
///
/// What `fetch` or `keep` fail with.
pub async fn scan_page<R, V, I, E, F, Fut>(
    mut fetch: F,
    mut after: Option<I>,
    limit: usize,
    id_of: impl Fn(&R) -> I,
    item_id: impl Fn(&V) -> I,
    keep: impl Fn(&R) -> Result<Option<V>, E>,
) -> Result<(Vec<V>, Option<I>), E>
where
    I: Clone,
    F: FnMut(Option<I>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, E>>,
{
    let (mut page, mut scanned) = (Vec::new(), 0usize);
    loop {
        let batch = fetch(after.clone()).await?;
        let exhausted = batch.len() < SCAN_BATCH;
        for r in &batch {
            scanned += 1;
            if let Some(v) = keep(r)? {
                if page.len() == limit {
                    let next = page.last().map(&item_id);
                    return Ok((page, next));
                }
                page.push(v);
            }
            after = Some(id_of(r));
        }
        if exhausted {
            return Ok((page, None));
        }
        if scanned >= SCAN_PER_PAGE {
            return Ok((page, after));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_figures_and_notes_read_back_as_written() {
        let classes = vec![SlaClassDay {
            class: "verification".into(),
            requests: 10,
            under_300ms: 9,
            sum_micros: 1_234_567,
            buckets: vec![1, 0, 8, 1],
        }];
        assert_eq!(decode_classes(&encode_classes(&classes)).unwrap(), classes);
        let note = IncidentNote {
            at: Timestamp::from_unix_millis(1_700_000_000_000),
            status: IncidentStatus::Identified,
            message: "a \"quoted\" <message>".into(),
            author: "nmvo-ops".into(),
        };
        assert_eq!(decode_notes(&format!("[{}]", encode_note(&note))).unwrap(), vec![note]);
    }

    /// Runs a future whose every await is ready at once.
    fn now<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("not ready"),
        }
    }

    /// Pages of the numbers `0..n` that `keep` keeps, in batches as a store would read them.
    fn page(n: u64, after: Option<u64>, limit: usize, keep: fn(u64) -> bool) -> (Vec<u64>, Option<u64>) {
        now(scan_page(
            |after: Option<u64>| {
                let from = after.map_or(0, |a| a + 1);
                std::future::ready(Ok::<_, ()>((from..n).take(SCAN_BATCH).collect::<Vec<u64>>()))
            },
            after,
            limit,
            |r| *r,
            |v| *v,
            |r| Ok(Some(*r).filter(|r| keep(*r))),
        ))
        .unwrap()
    }

    #[test]
    fn a_filtered_page_ends_at_its_limit_at_the_end_or_at_the_scan_bound_with_a_cursor_to_go_on() {
        assert_eq!(page(10, None, 3, |_| true), (vec![0, 1, 2], Some(2)));
        assert_eq!(page(10, Some(8), 3, |_| true), (vec![9], None));
        assert_eq!(
            page(4, None, 4, |_| true),
            (vec![0, 1, 2, 3], None),
            "no empty page after a full last one"
        );
        assert_eq!(page(2_000, None, 2, |r| r % 700 == 0), (vec![0, 700], Some(700)));
        // One match far away: a page looks at SCAN_PER_PAGE records and hands on the cursor.
        let far = SCAN_PER_PAGE as u64 + 50;
        let first = page(far + 1, None, 5, |r| r == SCAN_PER_PAGE as u64 + 50);
        assert_eq!(first, (vec![], Some(SCAN_PER_PAGE as u64 - 1)));
        assert_eq!(page(far + 1, first.1, 5, |r| r == SCAN_PER_PAGE as u64 + 50), (vec![far], None));
    }

    #[test]
    fn damaged_figures_and_timelines_are_corrupt_not_zero() {
        assert!(decode_classes("[{\"class\":\"verification\"}]").is_err());
        assert!(decode_classes("{}").is_err());
        assert!(decode_notes("[{\"at\":1,\"status\":\"gone\",\"message\":\"\",\"author\":\"\"}]").is_err());
    }
}
