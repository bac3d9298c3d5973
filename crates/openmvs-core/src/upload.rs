//! A chunk of a serial upload at the hub (api.md §3 `POST .../packs`) as pure decisions: which
//! lines are serials, which repeat an earlier line of the upload, and which were uploaded before
//! for the product. The hub computes the keyed digests, looks the candidates up in its index and
//! passes the answer in; what is accepted goes to the markets.
//!
//! Also where an upload stands, as the hub keeps it and answers its OBP.

use std::collections::HashMap;
use std::hash::Hash;

use crate::ids::{Batch, MarketCode, ProductCode, Serial, UploadId};

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStatus {
    /// Lines are being received and distributed.
    Received,
    /// Every line is received and validated; chunks may still await acknowledgement.
    Validated,
    /// Every target market acknowledged every chunk.
    Distributed,
    /// The upload was abandoned (what was distributed stays distributed).
    Failed,
}

impl UploadStatus {
    /// The upper-case name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Received => "RECEIVED",
            UploadStatus::Validated => "VALIDATED",
            UploadStatus::Distributed => "DISTRIBUTED",
            UploadStatus::Failed => "FAILED",
        }
    }

    /// Parses an upper-case name.
    pub fn parse(s: &str) -> Option<UploadStatus> {
        [UploadStatus::Received, UploadStatus::Validated, UploadStatus::Distributed, UploadStatus::Failed]
            .into_iter()
            .find(|u| u.as_str() == s)
    }
}

/// Where an upload is in one market.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketDelivery {
    /// Chunks may still come, or some await acknowledgement.
    Pending,
    /// The upload is validated (no more chunks will come) and the market acknowledged every one.
    Distributed,
}

impl MarketDelivery {
    /// The upper-case name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MarketDelivery::Pending => "PENDING",
            MarketDelivery::Distributed => "DISTRIBUTED",
        }
    }
}

/// A rejected line of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRejection {
    /// The line number, from 1; unique per upload.
    pub line: u64,
    /// The line as the OBP sent it, echoed back so that it can fix its file.
    pub serial: String,
    /// Why.
    pub reason: String,
}

/// The answer to an accepted upload: every line is durable, and its serials are on their way to
/// the target markets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadAccepted {
    /// The upload id, for reading where it stands.
    pub upload_id: UploadId,
    /// Lines received (rejected ones included; empty lines at the very end are not lines).
    pub received: u64,
}

/// An upload as its OBP sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadView {
    /// The upload id.
    pub id: UploadId,
    /// The product.
    pub product_code: ProductCode,
    /// The batch.
    pub batch: Batch,
    /// RECEIVED, VALIDATED, DISTRIBUTED or FAILED.
    pub status: UploadStatus,
    /// Lines received.
    pub received: u64,
    /// Lines rejected.
    pub rejected_count: u64,
    /// The first rejected lines (as many as the hub lists), in line order.
    pub rejected: Vec<UploadRejection>,
    /// Each target market and where the upload is there, in market order.
    pub markets: Vec<(MarketCode, MarketDelivery)>,
}

/// One refused line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRefusal<'a> {
    /// Its number in the upload, from 1.
    pub line: u64,
    /// The line as sent.
    pub text: &'a str,
    /// Why, in words.
    pub reason: String,
}

/// A line that is a serial, first seen in the chunk, with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a, D> {
    /// Its number in the upload.
    pub line: u64,
    /// The serial as sent.
    pub text: &'a str,
    /// Its digest.
    pub digest: D,
}

/// A chunk screened: the candidates in line order, and the lines refused so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screened<'a, D> {
    /// Serials not repeated within the chunk, in line order.
    pub candidates: Vec<Candidate<'a, D>>,
    /// Lines that are no serial or repeat an earlier line of the chunk.
    pub refused: Vec<LineRefusal<'a>>,
}

/// Screens a chunk of numbered lines: a line that is not a serial, or whose digest (the hub's
/// keyed digest of the serial) equals an earlier line's, is refused naming why.
pub fn screen_lines<'a, D: Clone + Eq + Hash>(
    items: &'a [(u64, String)],
    digest: impl Fn(&Serial) -> D,
) -> Screened<'a, D> {
    let mut refused = Vec::new();
    let mut seen: HashMap<D, u64> = HashMap::with_capacity(items.len());
    let mut candidates = Vec::with_capacity(items.len());
    for (line, text) in items {
        match Serial::new(text) {
            Err(e) => {
                let reason = format!("not a serial number: {e}");
                refused.push(LineRefusal { line: *line, text, reason });
            }
            Ok(s) => {
                let d = digest(&s);
                if let Some(first) = seen.get(&d) {
                    refused.push(LineRefusal {
                        line: *line,
                        text,
                        reason: format!("repeats line {first} of this upload"),
                    });
                } else {
                    seen.insert(d.clone(), *line);
                    candidates.push(Candidate { line: *line, text, digest: d });
                }
            }
        }
    }
    Screened { candidates, refused }
}

/// Decides a screened chunk once the index was asked: a candidate uploaded before for the
/// product (`uploaded_before`, one flag per candidate, in order) is refused; the rest are
/// accepted, in line order. The refusals come back in line order.
pub fn decide_chunk<'a, D>(
    screened: Screened<'a, D>,
    uploaded_before: &[bool],
) -> (Vec<Candidate<'a, D>>, Vec<LineRefusal<'a>>) {
    let Screened { candidates, mut refused } = screened;
    let mut accepted = Vec::with_capacity(candidates.len());
    for (c, before) in
        candidates.into_iter().zip(uploaded_before.iter().copied().chain(std::iter::repeat(false)))
    {
        if before {
            refused.push(LineRefusal {
                line: c.line,
                text: c.text,
                reason: "the serial was uploaded before for this product".into(),
            });
        } else {
            accepted.push(c);
        }
    }
    refused.sort_by_key(|r| r.line);
    (accepted, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<(u64, String)> {
        v.iter().enumerate().map(|(i, s)| (i as u64 + 1, (*s).to_owned())).collect()
    }

    #[test]
    fn a_chunk_refuses_what_is_no_serial_repeats_or_was_uploaded_before() {
        let items = lines(&["S1", "not a serial", "S2", "S1", "S3"]);
        let screened = screen_lines(&items, |s| s.as_str().to_owned());
        assert_eq!(screened.candidates.iter().map(|c| c.line).collect::<Vec<_>>(), [1, 3, 5]);
        let (accepted, refused) = decide_chunk(screened, &[false, true, false]);
        assert_eq!(accepted.iter().map(|c| c.text).collect::<Vec<_>>(), ["S1", "S3"]);
        let why: Vec<(u64, &str)> = refused.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(why[0].0, 2);
        assert!(why[0].1.starts_with("not a serial number"));
        assert_eq!(why[1], (3, "the serial was uploaded before for this product"));
        assert_eq!(why[2], (4, "repeats line 1 of this upload"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Every line is accepted or refused exactly once, and no two accepted lines share a
            /// digest.
            #[test]
            fn every_line_has_one_outcome_and_accepted_serials_are_distinct(
                texts in proptest::collection::vec("[A-C]{1,2}|[a ]{1,3}", 0..40),
                before in proptest::collection::vec(any::<bool>(), 0..40),
            ) {
                let items: Vec<(u64, String)> =
                    texts.into_iter().enumerate().map(|(i, s)| (i as u64 + 1, s)).collect();
                let (accepted, refused) = decide_chunk(screen_lines(&items, |s| s.as_str().to_owned()), &before);
                let mut all: Vec<u64> = accepted.iter().map(|c| c.line).chain(refused.iter().map(|r| r.line)).collect();
                all.sort_unstable();
                prop_assert_eq!(all, (1..=items.len() as u64).collect::<Vec<_>>());
                let distinct: std::collections::HashSet<&str> = accepted.iter().map(|c| c.text).collect();
                prop_assert_eq!(distinct.len(), accepted.len());
            }
        }
    }
}
