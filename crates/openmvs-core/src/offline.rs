//! What happens to an operation a pharmacy recorded while its national system could not be
//! reached (DR Art 29: record the identifier, verify and decommission as soon as possible), once
//! the system answers again. The offline agent replays each pack's operations in order; a
//! decommission is preceded by a verify, and what that verify answered decides whether the
//! decommission is sent.

use crate::pack::{PackState, Reason};
use crate::return_code::ReturnCode;

/// What a verify answered, as far as the replay cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The return code.
    pub code: ReturnCode,
    /// The pack's state, when the pack is known.
    pub state: Option<PackState>,
    /// Why a known pack is not dispensable (expired, recalled, withdrawn).
    pub reasons: Vec<Reason>,
}

impl Verified {
    /// Whether the pack may be dispensed: known, matching, ACTIVE, with no reason against it.
    pub fn dispensable(&self) -> bool {
        self.code == ReturnCode::Success && self.state == Some(PackState::Active) && self.reasons.is_empty()
    }
}

/// The next step of a recorded decommission after its verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterVerify {
    /// Send the decommission.
    Send,
    /// Do not send it: the pack goes on the pharmacist's list with the verify's answer.
    Hold,
    /// The answer says another system could not be reached (`NMVS_TI_HUB_01`,
    /// `NMVS_TI_MKT_01`), not what the rules decide: keep the operation and try again later.
    Retry,
}

/// Whether a recorded decommission is sent after its verify answered `v`.
///
/// - A dispensable pack: the decommission is sent.
/// - An authentic pack already decommissioned (supplied, destroyed, exported, ... elsewhere or
///   here) and nothing else against it: the decommission is sent. The pack really left the
///   pharmacy, so the national system must hear of this second decommission, and it applies the
///   rules to it as to any other: `NMVS_NC_PCK_22` with alert A24 from another location (the sign
///   of a cloned code, fmd-rules §4.3 and §4.9), `NMVS_NC_PCK_23` without an alert for a repeat
///   from this location. A verify never alerts on state (§4.5), so without the decommission the
///   alert the rules expect would never be raised.
/// - A pack whose batch is expired or recalled, or whose product is withdrawn: held. The
///   decommission would only be refused (level 4, no alert, nothing changed); the pharmacist
///   needs the list, not a refusal.
/// - An identifier that matches no pack, or matches it only in part (unknown serial or batch,
///   another batch, another expiry): held. The verify raised the alert already; the decommission
///   would raise a second one for the same event (§4.11: one alert per event).
/// - A product unknown in every market, or a scan to repeat: held, for the pharmacist.
pub fn after_verify(v: &Verified) -> AfterVerify {
    if v.code.is_unreachable() {
        return AfterVerify::Retry;
    }
    if v.dispensable() {
        return AfterVerify::Send;
    }
    let decommissioned = v.code == ReturnCode::PackInactive
        && v.state.is_some_and(|s| s != PackState::Active)
        && v.reasons.is_empty();
    if decommissioned { AfterVerify::Send } else { AfterVerify::Hold }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: ReturnCode, state: Option<PackState>, reasons: &[Reason], expected: AfterVerify) {
        let v = Verified { code, state, reasons: reasons.to_vec() };
        assert_eq!(after_verify(&v), expected, "{code} {state:?} {reasons:?}");
    }

    #[test]
    fn a_recorded_decommission_is_sent_only_where_the_rules_have_something_to_decide() {
        use AfterVerify::{Hold, Retry, Send};
        use PackState::{Active, Destroyed, Supplied};
        check(ReturnCode::Success, Some(Active), &[], Send);
        check(ReturnCode::PackInactive, Some(Supplied), &[], Send);
        check(ReturnCode::PackInactive, Some(Destroyed), &[], Send);
        check(ReturnCode::PackInactive, Some(Supplied), &[Reason::Recalled], Hold);
        check(ReturnCode::BatchRecalled, Some(Active), &[Reason::Recalled], Hold);
        check(ReturnCode::BatchExpired, Some(Active), &[Reason::Expired], Hold);
        check(ReturnCode::ProductWithdrawn, Some(Active), &[Reason::Withdrawn], Hold);
        check(ReturnCode::Success, Some(Active), &[Reason::Recalled], Hold);
        check(ReturnCode::SerialUnknown, None, &[], Hold);
        check(ReturnCode::SerialAndBatchUnknown, None, &[], Hold);
        check(ReturnCode::BatchMismatch, Some(Active), &[], Hold);
        check(ReturnCode::ExpiryMismatch, Some(Active), &[], Hold);
        check(ReturnCode::ProductUnknown, None, &[], Hold);
        check(ReturnCode::RescanRequired, None, &[], Hold);
        check(ReturnCode::HubUnreachable, None, &[], Retry);
        check(ReturnCode::MarketUnreachable, None, &[], Retry);
    }
}
