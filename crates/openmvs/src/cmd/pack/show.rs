//! The readable form of a national system's answer to a pack command: a first line with the
//! outcome, the operation, the pack and its state; a second with the return code, what it means
//! and the request's `client_trx_id`; a line per scan warning.

use openmvs_client::wire::api::PackResponse;
use openmvs_core::ids::Expiry;
use openmvs_core::time::Date;

/// The pack as the command asked about it, for an answer that has no pack (an unknown serial).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    /// The product code.
    pub product_code: String,
    /// The serial.
    pub serial: String,
    /// The batch.
    pub batch: String,
    /// The expiry as encoded.
    pub expiry: String,
}

/// What an answer means for the command's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The operation did what was asked.
    Accepted,
    /// Processed and refused by the rules, without an alert.
    Refused,
    /// An alert was raised.
    Alert,
}

impl Outcome {
    /// The outcome of `answer`: an alert whatever else it says, then accepted or refused.
    pub fn of(answer: &PackResponse) -> Outcome {
        match (&answer.alert, answer.accepted) {
            (Some(_), _) => Outcome::Alert,
            (None, true) => Outcome::Accepted,
            (None, false) => Outcome::Refused,
        }
    }

    /// The exit status the command ends with.
    pub fn exit_status(self) -> u8 {
        match self {
            Outcome::Accepted => 0,
            Outcome::Refused => 3,
            Outcome::Alert => 4,
        }
    }
}

/// An expiry `YYMMDD` as the date it means (`2028-12-31`; day `00` is the month's last day), or
/// as given when it is not one.
pub fn expiry_date(encoded: &str, today: Date) -> String {
    Expiry::parse(encoded, today).map_or_else(|_| encoded.to_owned(), |e| e.date().to_string())
}

/// The lines that tell a person what `answer` to `operation` (e.g. `supply`, `undo supply`) means.
pub fn answer(operation: &str, answer: &PackResponse, asked: &Asked, today: Date) -> String {
    let head = match (Outcome::of(answer), &answer.alert) {
        (Outcome::Alert, Some(a)) => format!("ALERT {} raised (alert id {})", a.code, a.id),
        (Outcome::Refused, _) => "refused".to_owned(),
        _ => "accepted".to_owned(),
    };
    let (product_code, serial, batch, expiry) = match &answer.pack {
        Some(p) => (&p.product_code, &p.serial, &p.batch, &p.expiry),
        None => (&asked.product_code, &asked.serial, &asked.batch, &asked.expiry),
    };
    let product = match &answer.product {
        Some(p) => format!("{} ({product_code})", p.name),
        None => format!("product {product_code}"),
    };
    let mut pack = format!("serial {serial}");
    if !batch.is_empty() {
        pack.push_str(&format!(", batch {batch}"));
    }
    if !expiry.is_empty() {
        pack.push_str(&format!(", expiry {}", expiry_date(expiry, today)));
    }
    let state = match &answer.pack {
        Some(p) => {
            let mut s = p.state.clone();
            for r in &p.reasons {
                s.push_str(&format!(", {r}"));
            }
            s.push_str(if p.dispensable { ", may be dispensed" } else { ", not to be dispensed" });
            s
        }
        None => "pack unknown".to_owned(),
    };
    let through = if answer.intermarket { " (answered by another market through the hub)" } else { "" };
    let mut out = format!(
        "{head}: {operation} of {product}, {pack}: {state}{through}\n{} (level {}): {} client_trx_id {}",
        answer.return_code, answer.level, answer.message, answer.client_trx_id
    );
    for w in &answer.warnings {
        out.push_str(&format!("\nwarning {}: {}", w.code, w.message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmvs_client::wire::api::{AlertRef, PackView, ProductView, Warning};

    fn today() -> Date {
        Date::new(2026, 1, 15).unwrap()
    }

    fn asked() -> Asked {
        Asked {
            product_code: "09501101530003".into(),
            serial: "NOSUCH".into(),
            batch: "EXA2401".into(),
            expiry: "281200".into(),
        }
    }

    fn response(accepted: bool, code: &str, state: Option<(&str, &[&str], bool)>) -> PackResponse {
        PackResponse {
            trx_id: "TRX-1".into(),
            client_trx_id: "pos-1".into(),
            accepted,
            return_code: code.into(),
            level: if accepted { 1 } else { 3 },
            message: "What it means.".into(),
            pack: state.map(|(state, reasons, dispensable)| PackView {
                scheme: "GTIN".into(),
                product_code: "09501101530003".into(),
                serial: "EXA00000003".into(),
                batch: "EXA2401".into(),
                expiry: "281231".into(),
                state: state.into(),
                reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
                dispensable,
            }),
            product: state.map(|_| ProductView {
                name: "Examplomab 10 mg tablets".into(),
                common_name: "examplomab".into(),
                strength: "10 mg".into(),
                form: "TABLET".into(),
                pack_size: "30".into(),
            }),
            alert: None,
            intermarket: false,
            warnings: vec![],
        }
    }

    /// Checks the readable lines and the outcome of one answer.
    fn check(operation: &str, r: &PackResponse, outcome: Outcome, lines: &[&str]) {
        assert_eq!(Outcome::of(r), outcome, "{r:?}");
        let text = answer(operation, r, &asked(), today());
        assert_eq!(text.lines().collect::<Vec<_>>(), lines, "{text}");
    }

    #[test]
    fn an_accepted_answer_names_the_product_the_pack_its_state_and_the_expiry_as_a_date() {
        check(
            "supply",
            &response(true, "NMVS_SUCCESS", Some(("SUPPLIED", &[], false))),
            Outcome::Accepted,
            &[
                "accepted: supply of Examplomab 10 mg tablets (09501101530003), serial EXA00000003, batch EXA2401, expiry 2028-12-31: SUPPLIED, not to be dispensed",
                "NMVS_SUCCESS (level 1): What it means. client_trx_id pos-1",
            ],
        );
        check(
            "verify",
            &response(true, "NMVS_SUCCESS", Some(("ACTIVE", &[], true))),
            Outcome::Accepted,
            &[
                "accepted: verify of Examplomab 10 mg tablets (09501101530003), serial EXA00000003, batch EXA2401, expiry 2028-12-31: ACTIVE, may be dispensed",
                "NMVS_SUCCESS (level 1): What it means. client_trx_id pos-1",
            ],
        );
    }

    #[test]
    fn a_refusal_shows_the_reasons_and_an_intermarket_answer_says_so() {
        let mut r = response(false, "NMVS_NC_PCK_02", Some(("ACTIVE", &["EXPIRED", "RECALLED"], false)));
        r.intermarket = true;
        check(
            "undo supply",
            &r,
            Outcome::Refused,
            &[
                "refused: undo supply of Examplomab 10 mg tablets (09501101530003), serial EXA00000003, batch EXA2401, expiry 2028-12-31: ACTIVE, EXPIRED, RECALLED, not to be dispensed (answered by another market through the hub)",
                "NMVS_NC_PCK_02 (level 3): What it means. client_trx_id pos-1",
            ],
        );
    }

    #[test]
    fn an_alert_names_its_code_and_id_and_the_pack_as_asked_when_none_is_known() {
        let mut r = response(false, "NMVS_NC_PC_02", None);
        r.alert = Some(AlertRef { id: "ALR-9".into(), code: "A3".into() });
        r.warnings = vec![Warning { code: "LOWERCASE_FIELD".into(), message: "Check Caps Lock.".into() }];
        check(
            "verify",
            &r,
            Outcome::Alert,
            &[
                "ALERT A3 raised (alert id ALR-9): verify of product 09501101530003, serial NOSUCH, batch EXA2401, expiry 2028-12-31: pack unknown",
                "NMVS_NC_PC_02 (level 3): What it means. client_trx_id pos-1",
                "warning LOWERCASE_FIELD: Check Caps Lock.",
            ],
        );
    }

    #[test]
    fn the_exit_status_follows_the_outcome_class() {
        assert_eq!(
            [Outcome::Accepted, Outcome::Refused, Outcome::Alert].map(Outcome::exit_status),
            [0, 3, 4]
        );
    }

    #[test]
    fn an_expiry_that_is_no_date_is_shown_as_given() {
        assert_eq!(expiry_date("281300", today()), "281300");
        assert_eq!(expiry_date("290200", today()), "2029-02-28");
    }
}
