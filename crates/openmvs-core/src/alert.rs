//! The alert lifecycle (fmd-rules §4.11): OPEN, INVESTIGATING, ESCALATED, CLOSED.

use std::fmt;

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
/// stands. The national system shows its own alerts; the hub shows an OBP the alerts markets
/// forwarded, under the hub's id and with the OBP's own investigation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertView {
    /// The alert's id where it is read.
    pub id: AlertId,
    /// The hub alert code.
    pub code: AlertCode,
    /// The return code of the request that raised it.
    pub return_code: ReturnCode,
    /// The market that raised it.
    pub market: MarketCode,
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
}

/// Decides a status change of an alert currently in `current`.
///
/// The lifecycle only moves forward: OPEN -> INVESTIGATING -> ESCALATED -> CLOSED, where steps
/// may be skipped but never taken back, and CLOSED is final.
pub fn decide_status_change(
    current: AlertStatus,
    req: &StatusChange<'_>,
) -> Result<StatusOutcome, StatusChangeError> {
    if req.status <= current || req.status == AlertStatus::Open {
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
    fn alerts_never_move_back_and_closed_is_final() {
        for from in AlertStatus::ALL {
            for to in AlertStatus::ALL {
                if to <= from || to == Open {
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
}
