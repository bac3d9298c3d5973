//! An OBP's pack state changes at the hub (api.md §3 `POST .../packs/state`) as pure decisions:
//! which states an OBP may set, what a request may carry, and which serials are accepted. The
//! hub reads the batch and which serials were uploaded, passes them in, and sends the accepted
//! changes to the markets.
//!
//! Also what the hub answers: the outcome of a change, and where one pack stands in each market
//! (the OBP's pack query).

use std::collections::{BTreeMap, HashSet};

use crate::error::ApiError;
use crate::ids::{Batch, MarketCode, ProductCode, Serial};
use crate::pack::{Command, Operation, PackState, Policy};
use crate::return_code::ReturnCode;
use crate::roles::{Action, Role, access};

/// The most serials of one request: each becomes one message per market, all in one unit.
pub const MAX_PACK_STATE_SERIALS: usize = 10_000;

/// The operation that takes a pack to `state`, if an OBP may ask for that state at the hub.
pub fn obp_operation(state: PackState) -> Option<Operation> {
    let op = match state {
        PackState::Stolen => Operation::Stolen,
        PackState::Destroyed => Operation::Destroy,
        PackState::FreeSample => Operation::FreeSample,
        PackState::CheckedOut => Operation::CheckOut,
        _ => return None,
    };
    // The one permission table decides, so the hub cannot drift from it.
    access(Role::Obp, Action::Pack(Command::Set(op)), &Policy::default()).is_allowed().then_some(op)
}

/// The operation an OBP may undo at the hub, if `state` is the one it sets: only a check-out,
/// which the same OBP may revert without a time limit (fmd-rules §3). STOLEN and DESTROYED are
/// never undone; a free sample's undo is bound to the DR Art 13 window of the market where it was
/// recorded, so it is undone there, not through the hub.
pub fn obp_undo_operation(state: PackState) -> Option<Operation> {
    obp_operation(state).filter(|op| *op == Operation::CheckOut)
}

/// Checks a request as a whole: the state must be one an OBP may set (400 naming `state`), and
/// there must be 1 to [`MAX_PACK_STATE_SERIALS`] serials (400, or 413 naming `serials`).
pub fn check_request(state: &str, serials: &[String]) -> Result<(PackState, Operation), ApiError> {
    let Some(found) = PackState::parse(state).and_then(|s| obp_operation(s).map(|op| (s, op))) else {
        return Err(ApiError::malformed(
            "state",
            format!("'{state}' is not STOLEN, DESTROYED, FREE_SAMPLE or CHECKED_OUT"),
        ));
    };
    check_serials(serials)?;
    Ok(found)
}

/// Checks a request to undo (`"undo": true`): the state named must be one an OBP may undo, only
/// CHECKED_OUT (400 naming `state` and the rule), and the serials as for [`check_request`]. The
/// packs return to ACTIVE in each market where this OBP checked them out.
pub fn check_undo_request(state: &str, serials: &[String]) -> Result<(PackState, Operation), ApiError> {
    let parsed = PackState::parse(state);
    let Some(found) = parsed.and_then(|s| obp_undo_operation(s).map(|op| (s, op))) else {
        let why = match parsed {
            Some(s) if s.is_irreversible() => format!("'{state}' can never be undone (fmd-rules §3)"),
            Some(s) if obp_operation(s).is_some() => format!(
                "'{state}' is undone only where it was recorded, within the undo window; an OBP undoes CHECKED_OUT"
            ),
            _ => format!("'{state}' is not a state an OBP undoes: only CHECKED_OUT"),
        };
        return Err(ApiError::malformed("state", why));
    };
    check_serials(serials)?;
    Ok(found)
}

fn check_serials(serials: &[String]) -> Result<(), ApiError> {
    if serials.is_empty() {
        return Err(ApiError::malformed("serials", "names no serial"));
    }
    if serials.len() > MAX_PACK_STATE_SERIALS {
        return Err(ApiError::new(ReturnCode::TooLarge)
            .with("serials", format!("{} serials, at most {MAX_PACK_STATE_SERIALS}", serials.len())));
    }
    Ok(())
}

/// What happened to one serial of a change, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackStateResult {
    /// The serial as sent (cut short when it is not a serial at all).
    pub serial: String,
    /// Whether the change was queued for the markets.
    pub accepted: bool,
    /// `NMVS_SUCCESS`, or why not: malformed, never uploaded, repeated in the request, or the
    /// batch recalled in every target market.
    pub return_code: ReturnCode,
    /// Why not, in words.
    pub reason: Option<String>,
}

/// The answer to an OBP's pack state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackStatesAnswer {
    /// The product.
    pub product_code: ProductCode,
    /// The batch.
    pub batch: Batch,
    /// The state asked for, or undone.
    pub state: PackState,
    /// Whether the change undoes `state` (the packs return to ACTIVE).
    pub undo: bool,
    /// The markets the accepted changes go to, in market order.
    pub markets: Vec<MarketCode>,
    /// The batch's markets that recalled it and so take no change from the OBP (fmd-rules §3).
    pub recalled: Vec<MarketCode>,
    /// One per serial, in request order.
    pub results: Vec<PackStateResult>,
}

/// Where a pack stands in one market, as that market answered the hub (the hub keeps no pack
/// states).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketPackState {
    /// `ACTIVE`, `SUPPLIED`, ..., or `UNKNOWN` when the market holds no answer.
    pub state: String,
    /// Why an ACTIVE pack cannot be dispensed (`WITHDRAWN`, `RECALLED`, `EXPIRED`), or why the
    /// state is unknown (`UNREACHABLE`, `NOT_DISTRIBUTED`).
    pub reasons: Vec<String>,
}

/// Where one pack stands in each target market: the answer to an OBP's pack query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackAcrossMarkets {
    /// The pack's batch as a market that holds it says; `None` when no market that answered
    /// holds it (all unreachable, or the serials not yet distributed anywhere).
    pub batch: Option<String>,
    /// Each target market, in market order.
    pub markets: BTreeMap<MarketCode, MarketPackState>,
}

/// Why one serial of a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialRefusal {
    /// Malformed, never uploaded, repeated in the request, or the batch recalled everywhere.
    pub code: ReturnCode,
    /// Why, in words.
    pub reason: String,
}

fn refusal(code: ReturnCode, reason: impl Into<String>) -> SerialRefusal {
    SerialRefusal { code, reason: reason.into() }
}

/// Each serial of a request, in request order: a serial, or refused as not one or as repeating
/// an earlier serial of the request.
pub fn screen_serials(serials: &[String]) -> Vec<Result<Serial, SerialRefusal>> {
    let mut seen = HashSet::new();
    serials
        .iter()
        .map(|text| match Serial::new(text) {
            Err(e) => Err(refusal(ReturnCode::MalformedRequest, format!("not a serial: {e}"))),
            Ok(_) if !seen.insert(text.as_str()) => {
                Err(refusal(ReturnCode::BulkDuplicateSerial, "repeats an earlier serial of this request"))
            }
            Ok(s) => Ok(s),
        })
        .collect()
}

/// Decides each screened serial: a serial is accepted when it was uploaded for the product
/// (`uploaded`, one flag per serial that screened as a serial, in order) and the batch is open in
/// some target market (`open_markets`: not every one recalled it).
pub fn decide_serials(
    screened: Vec<Result<Serial, SerialRefusal>>,
    uploaded: &[bool],
    open_markets: bool,
    product_code: &ProductCode,
    batch: &Batch,
) -> Vec<Result<Serial, SerialRefusal>> {
    let mut flags = uploaded.iter();
    screened
        .into_iter()
        .map(|r| {
            let serial = r?;
            if !flags.next().copied().unwrap_or(false) {
                Err(refusal(ReturnCode::NotFound, format!("was never uploaded for {product_code}")))
            } else if !open_markets {
                Err(refusal(
                    ReturnCode::BatchRecalled,
                    format!("batch {batch} is recalled in every target market"),
                ))
            } else {
                Ok(serial)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Scheme;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn an_obp_sets_only_its_four_states() {
        let allowed: Vec<PackState> =
            PackState::ALL.into_iter().filter(|s| obp_operation(*s).is_some()).collect();
        assert_eq!(
            allowed,
            [PackState::Destroyed, PackState::FreeSample, PackState::Stolen, PackState::CheckedOut]
        );
    }

    #[test]
    fn a_request_names_a_settable_state_and_1_to_10000_serials() {
        let one = strings(&["S1"]);
        assert_eq!(check_request("STOLEN", &one).unwrap(), (PackState::Stolen, Operation::Stolen));
        let e = check_request("SUPPLIED", &one).unwrap_err();
        assert_eq!((e.http_status(), e.details[0].field.as_str()), (400, "state"));
        let e = check_request("STOLEN", &[]).unwrap_err();
        assert_eq!((e.http_status(), e.details[0].field.as_str()), (400, "serials"));
        let many = vec!["S".to_owned(); MAX_PACK_STATE_SERIALS + 1];
        assert_eq!(check_request("STOLEN", &many).unwrap_err().code, ReturnCode::TooLarge);
    }

    #[test]
    fn an_obp_undoes_only_its_check_out_and_says_why_not_otherwise() {
        let one = strings(&["S1"]);
        assert_eq!(
            check_undo_request("CHECKED_OUT", &one).unwrap(),
            (PackState::CheckedOut, Operation::CheckOut)
        );
        for (state, why) in [
            ("STOLEN", "can never be undone"),
            ("DESTROYED", "can never be undone"),
            ("FREE_SAMPLE", "undone only where it was recorded"),
            ("SUPPLIED", "only CHECKED_OUT"),
            ("ACTIVE", "only CHECKED_OUT"),
        ] {
            let e = check_undo_request(state, &one).unwrap_err();
            assert_eq!((e.http_status(), e.details[0].field.as_str()), (400, "state"), "{state}");
            assert!(e.details[0].message.contains(why), "{state}: {e:?}");
        }
        assert_eq!(check_undo_request("CHECKED_OUT", &[]).unwrap_err().details[0].field, "serials");
    }

    #[test]
    fn each_serial_is_refused_on_its_own() {
        let pc = ProductCode::new(Scheme::Gtin, "09501101530003").unwrap();
        let b = Batch::new("B1").unwrap();
        let screened = screen_serials(&strings(&["S1", "not a serial", "S1", "S2"]));
        let codes = |rs: &[Result<Serial, SerialRefusal>]| {
            rs.iter().map(|r| r.as_ref().map_or_else(|e| e.code, |_| ReturnCode::Success)).collect::<Vec<_>>()
        };
        assert_eq!(
            codes(&screened),
            [
                ReturnCode::Success,
                ReturnCode::MalformedRequest,
                ReturnCode::BulkDuplicateSerial,
                ReturnCode::Success
            ]
        );
        let decided = decide_serials(screened.clone(), &[true, false], true, &pc, &b);
        assert_eq!(decided[0].as_ref().unwrap().as_str(), "S1");
        assert_eq!(decided[3].as_ref().unwrap_err().code, ReturnCode::NotFound);
        let recalled = decide_serials(screened, &[true, true], false, &pc, &b);
        assert_eq!(recalled[0].as_ref().unwrap_err().code, ReturnCode::BatchRecalled);
        assert_eq!(recalled[1].as_ref().unwrap_err().code, ReturnCode::MalformedRequest);
    }
}
