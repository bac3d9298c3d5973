//! The alert lifecycle (fmd-rules §4.11): OPEN, INVESTIGATING, ESCALATED, CLOSED; and the thread
//! of status changes and comments that the market's NMVO and the owning OBP work on together, each
//! on their own system, which must agree once each has the other's entries ([`AlertThread`]).

use std::fmt;

use crate::error::ApiError;
use crate::ids::{AlertId, Location, MarketCode, Serial};
use crate::return_code::{AlertCode, ReturnCode};
use crate::time::Timestamp;

/// Where an alert is in its investigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertStatus {
    /// Raised, nobody has looked yet.
    Open,
    /// Being investigated.
    Investigating,
    /// Handed to a higher level (the OBP, the authority).
    Escalated,
    /// Finished, with a classification.
    Closed,
}

impl AlertStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [AlertStatus; 4] =
        [AlertStatus::Open, AlertStatus::Investigating, AlertStatus::Escalated, AlertStatus::Closed];

    /// The upper-case name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "OPEN",
            AlertStatus::Investigating => "INVESTIGATING",
            AlertStatus::Escalated => "ESCALATED",
            AlertStatus::Closed => "CLOSED",
        }
    }

    /// Parses an upper-case status name.
    pub fn parse(s: &str) -> Option<AlertStatus> {
        AlertStatus::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an investigation concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Classification {
    /// A scanner, software or network fault.
    TechnicalError,
    /// A mistake in handling (double scan, wrong pack).
    ProceduralError,
    /// Wrong or missing data uploaded by the OBP.
    ObpDataError,
    /// The pack is falsified: reported to the national competent authority (DR Art 37(d)).
    FalsificationConfirmed,
    /// Anything else (explain in the comment).
    Other,
}

impl Classification {
    /// Every classification.
    pub const ALL: [Classification; 5] = [
        Classification::TechnicalError,
        Classification::ProceduralError,
        Classification::ObpDataError,
        Classification::FalsificationConfirmed,
        Classification::Other,
    ];

    /// The upper-case name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::TechnicalError => "TECHNICAL_ERROR",
            Classification::ProceduralError => "PROCEDURAL_ERROR",
            Classification::ObpDataError => "OBP_DATA_ERROR",
            Classification::FalsificationConfirmed => "FALSIFICATION_CONFIRMED",
            Classification::Other => "OTHER",
        }
    }

    /// Parses an upper-case classification name.
    pub fn parse(s: &str) -> Option<Classification> {
        Classification::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// An alert as it is listed and read: as the market raised it, with where its investigation
/// stands. One alert has one id everywhere: in the answer to the request that raised it, at the
/// national systems that hold a copy, and at the hub for the OBP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertView {
    /// The alert's id.
    pub id: AlertId,
    /// The hub alert code.
    pub code: AlertCode,
    /// The return code of the request that raised it.
    pub return_code: ReturnCode,
    /// The market of the request that raised it.
    pub market: MarketCode,
    /// The market that holds the pack: another market for an inter-market request, else `market`.
    pub pack_market: MarketCode,
    /// The product code, as the request named it.
    pub product_code: String,
    /// The serial.
    pub serial: Serial,
    /// The batch, as the request named it.
    pub batch: String,
    /// The location of the request.
    pub location: Location,
    /// When the market raised it.
    pub created_at: Timestamp,
    /// Where its investigation stands.
    pub status: AlertStatus,
    /// What the investigation concluded, once closed.
    pub classification: Option<Classification>,
    /// The last comment.
    pub comment: Option<String>,
    /// The status changes and comments, in the order they were made.
    pub thread: AlertThread,
}

impl AlertView {
    /// The markets that keep a copy of the alert: where it was raised and where the pack is held.
    pub fn markets(&self) -> Vec<MarketCode> {
        let mut m = vec![self.market];
        if self.pack_market != self.market {
            m.push(self.pack_market);
        }
        m
    }
}

/// One status change of an alert, as both sides keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertChange {
    /// Unique, so that a change delivered twice is kept once.
    pub id: String,
    /// The status the change was decided on.
    pub from: AlertStatus,
    /// The status asked for.
    pub to: AlertStatus,
    /// The classification, when closing.
    pub classification: Option<Classification>,
    /// Who made it: a client of a national system, or an OBP.
    pub by: String,
    /// Their role, e.g. `NMVO` or `OBP`.
    pub role: String,
    /// When it was made, on the clock of the side that made it.
    pub at: Timestamp,
}

/// One comment on an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertComment {
    /// Unique, so that a comment delivered twice is kept once.
    pub id: String,
    /// Who wrote it.
    pub author: String,
    /// Their role.
    pub role: String,
    /// When.
    pub at: Timestamp,
    /// The text, at most [`MAX_COMMENT_CHARS`] characters.
    pub text: String,
}

/// One entry of an alert's thread, as another system that holds the alert sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertEntry {
    /// A status change.
    Change(AlertChange),
    /// A comment.
    Comment(AlertComment),
}

/// The status changes and comments of an alert, each list in `(at, id)` order.
///
/// **The rule for changes made on both sides at once.** Each side applies its own changes at
/// once and the other side's when they arrive, in whatever order that is; the status both show is
/// computed from every change they hold, replayed in `(at, id)` order from `OPEN` by
/// [`AlertThread::settle`]:
/// - a change that moves the alert forward takes effect (the later change wins when both sides
///   move it forward);
/// - a change that would move it back does not: it stays in the history, marked by the status
///   that resulted (the side that made it saw an older status);
/// - of two closings, the later one's classification stands;
/// - a closed alert reopens only by an explicit change: one that was decided on `CLOSED` itself
///   (`from == CLOSED`). A change decided on an open status never reopens an alert the other side
///   closed meanwhile.
///
/// Both sides hold the same changes once delivery catches up, so they show the same status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertThread {
    /// The status changes.
    pub history: Vec<AlertChange>,
    /// The comments.
    pub comments: Vec<AlertComment>,
}

impl AlertThread {
    /// The status and classification the changes come to (see the rule above).
    pub fn settle(&self) -> (AlertStatus, Option<Classification>) {
        let mut status = AlertStatus::Open;
        let mut classification = None;
        for c in &self.history {
            let reopen = status == AlertStatus::Closed && c.from == AlertStatus::Closed;
            if reopen || c.to > status || (c.to == AlertStatus::Closed && status == AlertStatus::Closed) {
                status = c.to;
                classification = if c.to == AlertStatus::Closed { c.classification } else { None };
            }
        }
        (status, classification)
    }

    /// Whether a change or comment with this id is held already.
    pub fn holds(&self, id: &str) -> bool {
        self.history.iter().any(|c| c.id == id) || self.comments.iter().any(|c| c.id == id)
    }

    /// Adds a change in its place; `false` (and nothing changes) when it is held already.
    pub fn add_change(&mut self, change: AlertChange) -> bool {
        if self.holds(&change.id) {
            return false;
        }
        let at = self.history.partition_point(|c| (c.at, &c.id) < (change.at, &change.id));
        self.history.insert(at, change);
        true
    }

    /// Adds a comment in its place; `false` (and nothing changes) when it is held already.
    pub fn add_comment(&mut self, comment: AlertComment) -> bool {
        if self.holds(&comment.id) {
            return false;
        }
        let at = self.comments.partition_point(|c| (c.at, &c.id) < (comment.at, &comment.id));
        self.comments.insert(at, comment);
        true
    }

    /// A new id for a change or comment made here: `<prefix>-<n>-<random>`, where `n` (eight
    /// digits) is one more than the highest of the thread's entries. Entries made at the same
    /// millisecond are ordered by id, so one made after another was seen sorts after it.
    pub fn next_id(&self, prefix: &str, random: u64) -> String {
        let n = self
            .history
            .iter()
            .map(|c| c.id.as_str())
            .chain(self.comments.iter().map(|c| c.id.as_str()))
            .filter_map(|id| id.split('-').nth(1)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        format!("{prefix}-{:08}-{random:016x}", n + 1)
    }

    /// Adds a change or comment another system made; `false` when it is held already.
    pub fn add_entry(&mut self, entry: AlertEntry) -> bool {
        match entry {
            AlertEntry::Change(c) => self.add_change(c),
            AlertEntry::Comment(c) => self.add_comment(c),
        }
    }

    /// The latest comment's text.
    pub fn last_comment(&self) -> Option<&str> {
        self.comments.last().map(|c| c.text.as_str())
    }
}

/// Checks a comment's text: 1 to [`MAX_COMMENT_CHARS`] characters, not only white space.
pub fn decide_comment(text: &str) -> Result<(), StatusChangeError> {
    let n = text.chars().count();
    if n > MAX_COMMENT_CHARS {
        return Err(StatusChangeError::CommentTooLong(n));
    }
    if text.trim().is_empty() {
        return Err(StatusChangeError::CommentEmpty);
    }
    Ok(())
}

/// A page of alerts, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPage {
    /// The alerts of the page.
    pub alerts: Vec<AlertView>,
    /// The id to continue after; `None` on the last page.
    pub next_cursor: Option<AlertId>,
}

/// The longest comment an alert status change may carry, in characters.
pub const MAX_COMMENT_CHARS: usize = 500;

/// A requested status change.
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    /// The status asked for.
    pub status: AlertStatus,
    /// The classification; required when closing, refused otherwise.
    pub classification: Option<Classification>,
    /// An optional comment.
    pub comment: Option<&'a str>,
}

/// The effect of an accepted status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusOutcome {
    /// The new status.
    pub status: AlertStatus,
    /// Whether the national competent authority must be told (a confirmed falsification).
    pub report_to_nca: bool,
}

/// Why a status change was refused; each names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusChangeError {
    /// The lifecycle does not allow this move.
    #[error("status: cannot move an alert from {from} to {to}")]
    Transition {
        /// Current status.
        from: AlertStatus,
        /// Requested status.
        to: AlertStatus,
    },
    /// Closing without a classification.
    #[error("classification: required when closing an alert")]
    ClassificationMissing,
    /// A classification on a status other than CLOSED.
    #[error("classification: only given when closing an alert")]
    ClassificationUnexpected,
    /// The comment is too long.
    #[error("comment: {0} characters, at most 500")]
    CommentTooLong(usize),
    /// The comment says nothing.
    #[error("text: a comment must not be empty")]
    CommentEmpty,
    /// A status change's comment that says nothing: it would join the thread as an empty
    /// comment, which no other system that holds the alert accepts.
    #[error("comment: must not be empty or only white space (leave it out for no comment)")]
    StatusCommentEmpty,
}

impl StatusChangeError {
    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            StatusChangeError::Transition { .. } => "status",
            StatusChangeError::ClassificationMissing | StatusChangeError::ClassificationUnexpected => {
                "classification"
            }
            StatusChangeError::CommentTooLong(_) | StatusChangeError::StatusCommentEmpty => "comment",
            StatusChangeError::CommentEmpty => "text",
        }
    }
}

/// One piece of work on an alert by someone who may work it.
#[derive(Debug, Clone, Copy)]
pub enum AlertWork<'a> {
    /// A status change, with an optional comment.
    Status(StatusChange<'a>),
    /// A comment.
    Comment(&'a str),
}

/// Who does a piece of work on an alert, and when: what the new thread entries name.
#[derive(Debug, Clone, Copy)]
pub struct Worker<'a> {
    /// A client id at a national system, an OBP id at the hub.
    pub by: &'a str,
    /// Their role.
    pub role: &'a str,
    /// When.
    pub at: Timestamp,
}

/// What a piece of work adds to an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDone {
    /// The thread with the new entries.
    pub thread: AlertThread,
    /// The status change made, to send to the other systems that hold the alert.
    pub change: Option<AlertChange>,
    /// The comment made (a status change's too), to send likewise.
    pub comment: Option<AlertComment>,
    /// Whether the national competent authority must be told (a confirmed falsification).
    pub report_to_nca: bool,
}

/// Decides a piece of work on an alert whose thread is `thread` (and status `current`, which the
/// thread settles to): a status change by [`decide_status_change`], a comment by
/// [`decide_comment`]; a status change's comment joins the thread as a comment. `random` makes
/// the new entries' ids unique ([`AlertThread::next_id`]).
pub fn decide_work(
    current: AlertStatus,
    thread: &AlertThread,
    work: &AlertWork<'_>,
    who: &Worker<'_>,
    random: [u64; 2],
) -> Result<WorkDone, StatusChangeError> {
    let mut done = WorkDone { thread: thread.clone(), change: None, comment: None, report_to_nca: false };
    let text = match work {
        AlertWork::Status(req) => {
            done.report_to_nca = decide_status_change(current, req)?.report_to_nca;
            let change = AlertChange {
                id: done.thread.next_id("ACH", random[0]),
                from: current,
                to: req.status,
                classification: req.classification,
                by: who.by.to_owned(),
                role: who.role.to_owned(),
                at: who.at,
            };
            done.thread.add_change(change.clone());
            done.change = Some(change);
            req.comment
        }
        AlertWork::Comment(text) => {
            decide_comment(text)?;
            Some(*text)
        }
    };
    if let Some(text) = text {
        let comment = AlertComment {
            id: done.thread.next_id("ACM", random[1]),
            author: who.by.to_owned(),
            role: who.role.to_owned(),
            at: who.at,
            text: text.to_owned(),
        };
        done.thread.add_comment(comment.clone());
        done.comment = Some(comment);
    }
    Ok(done)
}

/// Decides a status change of an alert currently in `current`.
///
/// The lifecycle moves forward: OPEN -> INVESTIGATING -> ESCALATED -> CLOSED, where steps may be
/// skipped but never taken back. A closed alert is reopened only explicitly, to INVESTIGATING or
/// ESCALATED (new facts came to light), when its classification goes, or closed again with
/// another classification.
pub fn decide_status_change(
    current: AlertStatus,
    req: &StatusChange<'_>,
) -> Result<StatusOutcome, StatusChangeError> {
    let reopen = current == AlertStatus::Closed && req.status != AlertStatus::Open;
    if !reopen && (req.status <= current || req.status == AlertStatus::Open) {
        return Err(StatusChangeError::Transition { from: current, to: req.status });
    }
    match (req.status, req.classification) {
        (AlertStatus::Closed, None) => return Err(StatusChangeError::ClassificationMissing),
        (s, Some(_)) if s != AlertStatus::Closed => return Err(StatusChangeError::ClassificationUnexpected),
        _ => {}
    }
    if let Some(c) = req.comment {
        let n = c.chars().count();
        if n > MAX_COMMENT_CHARS {
            return Err(StatusChangeError::CommentTooLong(n));
        }
        if c.trim().is_empty() {
            return Err(StatusChangeError::StatusCommentEmpty);
        }
    }
    Ok(StatusOutcome {
        status: req.status,
        report_to_nca: req.classification == Some(Classification::FalsificationConfirmed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertStatus::*;

    fn change(status: AlertStatus, classification: Option<Classification>) -> StatusChange<'static> {
        StatusChange { status, classification, comment: None }
    }

    #[test]
    fn alerts_move_forward_and_may_skip_steps() {
        for (from, to) in [(Open, Investigating), (Open, Escalated), (Investigating, Escalated)] {
            assert_eq!(decide_status_change(from, &change(to, None)).unwrap().status, to);
        }
        let c = Some(Classification::TechnicalError);
        for from in [Open, Investigating, Escalated] {
            assert_eq!(decide_status_change(from, &change(Closed, c)).unwrap().status, Closed);
        }
    }

    #[test]
    fn alerts_never_move_back_and_a_closed_alert_reopens_only_to_investigating_or_escalated() {
        for from in AlertStatus::ALL {
            for to in AlertStatus::ALL {
                if from == Closed && to != Open {
                    let c = (to == Closed).then_some(Classification::Other);
                    assert_eq!(decide_status_change(from, &change(to, c)).unwrap().status, to);
                } else if to <= from || to == Open {
                    let c = (to == Closed).then_some(Classification::Other);
                    assert!(matches!(
                        decide_status_change(from, &change(to, c)),
                        Err(StatusChangeError::Transition { .. })
                    ));
                }
            }
        }
    }

    #[test]
    fn closing_requires_a_classification_and_only_closing_takes_one() {
        assert_eq!(
            decide_status_change(Open, &change(Closed, None)),
            Err(StatusChangeError::ClassificationMissing)
        );
        assert_eq!(
            decide_status_change(Open, &change(Investigating, Some(Classification::Other))),
            Err(StatusChangeError::ClassificationUnexpected)
        );
    }

    #[test]
    fn a_confirmed_falsification_is_reported_to_the_authority() {
        let out =
            decide_status_change(Escalated, &change(Closed, Some(Classification::FalsificationConfirmed)));
        assert!(out.unwrap().report_to_nca);
        let out = decide_status_change(Escalated, &change(Closed, Some(Classification::ProceduralError)));
        assert!(!out.unwrap().report_to_nca);
    }

    #[test]
    fn comments_are_limited_to_five_hundred_characters() {
        let ok = "ü".repeat(500);
        let long = "x".repeat(501);
        let req = |c| StatusChange { status: Investigating, classification: None, comment: Some(c) };
        assert!(decide_status_change(Open, &req(&ok)).is_ok());
        assert_eq!(decide_status_change(Open, &req(&long)), Err(StatusChangeError::CommentTooLong(501)));
    }

    #[test]
    fn a_status_change_with_an_empty_comment_is_refused_naming_the_comment() {
        // It would join the thread as a comment no other system that holds the alert accepts.
        let req = |c| StatusChange { status: Investigating, classification: None, comment: Some(c) };
        for blank in ["", "  \n\t"] {
            let e = decide_status_change(Open, &req(blank)).unwrap_err();
            assert_eq!((e.clone(), e.field()), (StatusChangeError::StatusCommentEmpty, "comment"));
        }
        let none = StatusChange { status: Investigating, classification: None, comment: None };
        assert!(decide_status_change(Open, &none).is_ok());
    }

    fn ch(id: &str, from: AlertStatus, to: AlertStatus, at: i64) -> AlertChange {
        AlertChange {
            id: id.into(),
            from,
            to,
            classification: (to == Closed).then_some(Classification::ObpDataError),
            by: "x".into(),
            role: "NMVO".into(),
            at: Timestamp::from_unix_millis(at),
        }
    }

    fn settled(changes: &[AlertChange]) -> (AlertStatus, Option<Classification>) {
        let mut t = AlertThread::default();
        for c in changes {
            t.add_change(c.clone());
        }
        t.settle()
    }

    #[test]
    fn the_later_forward_change_wins_and_a_stale_one_does_not_move_the_alert_back() {
        // NMVO: OPEN -> INVESTIGATING at 1; OBP, not having seen it: OPEN -> ESCALATED at 2.
        let a = ch("a", Open, Investigating, 1);
        let b = ch("b", Open, Escalated, 2);
        assert_eq!(settled(&[a, b.clone()]), (Escalated, None));
        // The other way round in time: the escalation stands, the later investigation is stale.
        let a = ch("a", Open, Investigating, 3);
        assert_eq!(settled(&[b, a]), (Escalated, None));
    }

    #[test]
    fn a_closed_alert_reopens_only_by_a_change_decided_on_closed() {
        let close = ch("c", Open, Closed, 1);
        let concurrent = ch("i", Open, Investigating, 2);
        assert_eq!(settled(&[close.clone(), concurrent]), (Closed, Some(Classification::ObpDataError)));
        let reopen = ch("r", Closed, Investigating, 3);
        assert_eq!(settled(&[close, reopen]), (Investigating, None));
    }

    #[test]
    fn of_two_closings_the_later_classification_stands() {
        let mut first = ch("a", Open, Closed, 1);
        first.classification = Some(Classification::TechnicalError);
        let second = ch("b", Investigating, Closed, 2);
        assert_eq!(settled(&[second.clone(), first.clone()]), (Closed, Some(Classification::ObpDataError)));
        assert_eq!(settled(&[first, second]), (Closed, Some(Classification::ObpDataError)));
    }

    #[test]
    fn a_change_or_comment_held_already_is_not_added_twice() {
        let mut t = AlertThread::default();
        assert!(t.add_change(ch("a", Open, Investigating, 1)));
        assert!(!t.add_change(ch("a", Open, Investigating, 1)));
        let c = AlertComment {
            id: "m".into(),
            author: "x".into(),
            role: "OBP".into(),
            at: Timestamp::from_unix_millis(5),
            text: "hi".into(),
        };
        assert!(t.add_comment(c.clone()));
        assert!(!t.add_comment(c));
        assert_eq!((t.history.len(), t.comments.len()), (1, 1));
    }

    #[test]
    fn a_new_entry_sorts_after_every_entry_its_side_has_seen_even_in_the_same_millisecond() {
        let mut t = AlertThread::default();
        for random in [u64::MAX, 0, 7] {
            let id = t.next_id("ACH", random);
            t.add_change(AlertChange { id: id.clone(), ..ch("x", Open, Investigating, 1) });
            assert_eq!(t.history.last().map(|c| c.id.as_str()), Some(id.as_str()));
        }
        assert_eq!(t.history[0].id, "ACH-00000001-ffffffffffffffff");
    }

    #[test]
    fn a_status_change_with_a_comment_adds_both_entries_by_the_worker_and_a_refusal_names_its_field() {
        let who = Worker { by: "nmvo-1", role: "NMVO", at: Timestamp::from_unix_millis(9) };
        let req = StatusChange {
            status: Closed,
            classification: Some(Classification::Other),
            comment: Some("done"),
        };
        let done =
            decide_work(Escalated, &AlertThread::default(), &AlertWork::Status(req), &who, [1, 2]).unwrap();
        let made = done.change.as_ref().unwrap();
        assert_eq!((made.from, made.to, made.by.as_str(), made.at), (Escalated, Closed, "nmvo-1", who.at));
        assert_eq!(done.comment.as_ref().map(|c| (c.text.as_str(), c.role.as_str())), Some(("done", "NMVO")));
        assert_eq!((done.thread.history.len(), done.thread.comments.len()), (1, 1));
        assert_eq!(done.thread.settle(), (Closed, Some(Classification::Other)));
        let open = AlertWork::Status(change(Open, None));
        let e = decide_work(Investigating, &done.thread, &open, &who, [3, 4]).unwrap_err();
        assert_eq!(e.field(), "status");
        let e =
            decide_work(Open, &AlertThread::default(), &AlertWork::Comment(" "), &who, [5, 6]).unwrap_err();
        assert_eq!(e.field(), "text");
    }

    #[test]
    fn comments_are_one_to_five_hundred_characters_and_not_blank() {
        assert!(decide_comment("pack returned to the wholesaler").is_ok());
        assert_eq!(decide_comment("  "), Err(StatusChangeError::CommentEmpty));
        assert_eq!(decide_comment(&"x".repeat(501)), Err(StatusChangeError::CommentTooLong(501)));
    }

    proptest::proptest! {
        /// Both sides end with the same status whatever order the changes arrive in.
        #[test]
        fn every_order_of_arrival_settles_the_same(
            steps in proptest::collection::vec((0usize..4, 0usize..4, 0i64..6), 1..8),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let changes: Vec<AlertChange> = steps
                .iter()
                .enumerate()
                .map(|(i, (f, t, at))| ch(&format!("c{i}"), AlertStatus::ALL[*f], AlertStatus::ALL[*t], *at))
                .collect();
            let mut shuffled = changes.clone();
            let mut x = seed;
            for i in (1..shuffled.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (x >> 33) as usize % (i + 1));
            }
            proptest::prop_assert_eq!(settled(&changes), settled(&shuffled));
        }
    }
}

/// What a list of alerts is narrowed to besides its status and who may see it: the alert code,
/// product, batch, a market (where it was raised or where the pack is held), premises and a range
/// of when it was raised. Every criterion given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertCriteria {
    /// The hub alert code.
    pub code: Option<AlertCode>,
    /// The product code, as the request named it.
    pub product_code: Option<String>,
    /// The batch, as the request named it.
    pub batch: Option<String>,
    /// A market the alert concerns.
    pub market: Option<MarketCode>,
    /// The premises of the request.
    pub location: Option<String>,
    /// Raised at or after this instant.
    pub from: Option<Timestamp>,
    /// Raised before this instant.
    pub to: Option<Timestamp>,
    /// Closed with this classification: `FALSIFICATION_CONFIRMED` lists the reports owed to the
    /// national competent authority (DR Art 37(d)).
    pub classification: Option<Classification>,
}

/// The query parameters [`AlertCriteria::parse`] reads.
pub const ALERT_CRITERIA_PARAMS: [&str; 8] =
    ["code", "product_code", "batch", "market", "location", "from", "to", "classification"];

impl AlertCriteria {
    /// Whether `a` meets every criterion.
    pub fn matches(&self, a: &AlertView) -> bool {
        self.code.is_none_or(|c| a.code == c)
            && self.product_code.as_ref().is_none_or(|p| &a.product_code == p)
            && self.batch.as_ref().is_none_or(|b| &a.batch == b)
            && self.market.is_none_or(|m| a.market == m || a.pack_market == m)
            && self.location.as_ref().is_none_or(|l| a.location.as_str() == l)
            && self.from.is_none_or(|f| a.created_at >= f)
            && self.to.is_none_or(|t| a.created_at < t)
            && self.classification.is_none_or(|c| a.classification == Some(c))
    }

    /// Whether any criterion is given.
    pub fn is_empty(&self) -> bool {
        *self == AlertCriteria::default()
    }

    /// Reads the criteria from query parameters (`get` answers a parameter's value): `code` an
    /// alert code, `market` a market code, `from` and `to` a date `YYYY-MM-DD` (UTC; `to`
    /// includes its day) or an RFC 3339 instant (`to` excluded), the others as stored.
    ///
    /// # Errors
    ///
    /// A value that breaks its rule, named with the parameter (400).
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<AlertCriteria, ApiError> {
        let text = |name: &str, max: usize| -> Result<Option<String>, ApiError> {
            match get(name) {
                None => Ok(None),
                Some(v) if v.is_empty() || v.len() > max => {
                    Err(ApiError::field(name, format!("must be 1 to {max} characters")))
                }
                Some(v) => Ok(Some(v.to_owned())),
            }
        };
        let code = get("code")
            .map(|c| {
                AlertCode::parse(c).ok_or_else(|| {
                    ApiError::field(
                        "code",
                        format!("'{c}' is not an alert code (A2, A3, A24, A52, A68, SERIAL_GUESSING)"),
                    )
                })
            })
            .transpose()?;
        let market = get("market")
            .map(|m| MarketCode::new(m).map_err(|e| ApiError::field("market", e.to_string())))
            .transpose()?;
        let instant = |name: &str, end: bool| get(name).map(|v| query_instant(name, v, end)).transpose();
        let c = AlertCriteria {
            code,
            product_code: text("product_code", 50)?,
            batch: text("batch", 20)?,
            market,
            location: text("location", 100)?,
            from: instant("from", false)?,
            to: instant("to", true)?,
            classification: get("classification")
                .map(|c| {
                    Classification::parse(c).ok_or_else(|| {
                        ApiError::field("classification", format!("'{c}' is not a classification"))
                    })
                })
                .transpose()?,
        };
        if let (Some(f), Some(t)) = (c.from, c.to)
            && f >= t
        {
            return Err(ApiError::field("to", "must be after from"));
        }
        Ok(c)
    }
}

/// A query parameter naming an instant: an RFC 3339 instant, or a date `YYYY-MM-DD` (UTC) that
/// stands for its start, or with `end` for the start of the next day (so that a range `to` a date
/// includes it).
///
/// # Errors
///
/// Neither form (400 naming `name`).
pub fn query_instant(name: &str, v: &str, end: bool) -> Result<Timestamp, ApiError> {
    if let Some(t) = Timestamp::parse_rfc3339(v) {
        return Ok(t);
    }
    let day = parse_day(v).ok_or_else(|| {
        ApiError::field(name, format!("'{v}' is neither a date YYYY-MM-DD nor an RFC 3339 instant"))
    })?;
    let start = Timestamp::start_of(day);
    Ok(if end { start.plus(std::time::Duration::from_secs(86_400)) } else { start })
}

fn parse_day(s: &str) -> Option<crate::time::Date> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    crate::time::Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

#[cfg(test)]
mod criteria_tests {
    use super::*;

    fn get<'a>(q: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |k| q.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
    }

    #[test]
    fn criteria_are_read_with_the_parameter_named_at_fault() {
        let c = AlertCriteria::parse(get(&[("code", "A3"), ("from", "2026-12-01"), ("to", "2026-12-01")]))
            .unwrap();
        assert_eq!(c.code, Some(AlertCode::A3));
        let from = c.from.unwrap();
        assert_eq!(c.to.unwrap().since(from).as_secs(), 86_400, "to includes its day");
        let field = |q: &[(&str, &str)]| AlertCriteria::parse(get(q)).unwrap_err().details[0].field.clone();
        assert_eq!(field(&[("code", "A9")]), "code");
        assert_eq!(field(&[("market", "de")]), "market");
        assert_eq!(field(&[("from", "2026-13-01")]), "from");
        assert_eq!(field(&[("from", "2026-12-02"), ("to", "2026-12-01")]), "to");
        assert_eq!(field(&[("classification", "FAKE")]), "classification");
        assert_eq!(field(&[("batch", "")]), "batch");
        assert!(AlertCriteria::parse(get(&[])).unwrap().is_empty());
    }
}
