//! What a service keeps of an answer it gave, as JSON: the answer to a single-pack or bulk
//! request kept with its client's transaction id (a repeat of the request is given it again), a
//! bulk job's row results, the alert a market forwarded to the hub, and the audit records that
//! hold an answer (an alert after a status change, a refusal). Kept JSON is the JSON of the
//! answer's wire shape, made by the same `From` impl as the handler's, so a replay answers with
//! the bytes first answered; it is read back into the domain value it was made from.
//!
//! The services write and read kept JSON only through these functions, never naming a shape of
//! [`crate::api`]. A kept answer that does not read back is an error naming the field.

use openmvs_core::alert::AlertView;
use openmvs_core::answer::{BulkAccepted, BulkRowResult, PackAnswer};
use openmvs_core::error::ApiError;
use openmvs_core::time::Date;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api;

fn json(shape: &impl Serialize) -> String {
    serde_json::to_string(shape).expect("a wire shape always serialises")
}

fn read<T: DeserializeOwned>(kept: &str) -> Result<T, String> {
    serde_json::from_str(kept).map_err(|e| e.to_string())
}

/// The answer to a single-pack request, as kept for a replay.
pub fn pack_answer(a: &PackAnswer) -> String {
    json(&api::PackResponse::from(a))
}

/// A kept answer to a single-pack request; `decided_on` is the day it was decided.
pub fn read_pack_answer(kept: &str, decided_on: Date) -> Result<PackAnswer, String> {
    read::<api::PackResponse>(kept)?.to_answer(decided_on)
}

/// The answer to a bulk request, as kept for a replay.
pub fn bulk_accepted(a: &BulkAccepted) -> String {
    json(&api::BulkAccepted::from(a))
}

/// A kept answer to a bulk request.
pub fn read_bulk_accepted(kept: &str) -> Result<BulkAccepted, String> {
    Ok(BulkAccepted::from(&read::<api::BulkAccepted>(kept)?))
}

/// One row result of a bulk job, as kept until its submitter reads it.
pub fn bulk_result(r: &BulkRowResult) -> String {
    json(&api::BulkResult::from(r))
}

/// A kept row result of a bulk job.
pub fn read_bulk_result(kept: &str) -> Result<BulkRowResult, String> {
    read::<api::BulkResult>(kept)?.to_row_result()
}

/// An alert, as an audit record holds it.
pub fn alert(a: &AlertView) -> String {
    json(&api::AlertView::from(a))
}

/// An alert as a JSON value, for a record or an event that holds it with other fields.
pub fn alert_value(a: &AlertView) -> serde_json::Value {
    serde_json::to_value(api::AlertView::from(a)).expect("a wire shape always serialises")
}

/// A kept alert, such as the one a market forwarded to the hub.
pub fn read_alert(kept: &str) -> Result<AlertView, String> {
    read::<api::AlertView>(kept)?.to_alert()
}

/// A refusal, as the audit record of a refused request holds it: the body the caller was given.
pub fn refusal(e: &ApiError) -> String {
    json(&api::ErrorBody::from(e))
}

#[cfg(test)]
mod tests {
    use openmvs_core::alert::AlertStatus;
    use openmvs_core::answer::{AlertRef, AnsweredPack, BulkStatus, ProductSummary};
    use openmvs_core::ids::{Batch, Expiry, Location, MarketCode, PackIdentifier, ProductCode, Serial};
    use openmvs_core::pack::{PackState, PackView, Reason};
    use openmvs_core::return_code::{AlertCode, ReturnCode};
    use openmvs_core::scan::{ScanWarning, WarningCode};
    use openmvs_core::time::Timestamp;

    use super::*;

    fn today() -> Date {
        Date::new(2026, 11, 29).unwrap()
    }

    fn answer() -> PackAnswer {
        let info = ReturnCode::Success.info();
        PackAnswer {
            trx_id: "TRX-1".into(),
            client_trx_id: "t-1".into(),
            accepted: true,
            code: ReturnCode::Success,
            level: info.level,
            message: info.message.into(),
            pack: Some(AnsweredPack {
                id: PackIdentifier {
                    product_code: ProductCode::gtin("9501101530003").unwrap(),
                    serial: Serial::new("X4K9").unwrap(),
                    batch: Batch::new("ABC123").unwrap(),
                    expiry: Expiry::parse("271200", today()).unwrap(),
                    nhrn: None,
                },
                view: PackView {
                    state: PackState::Active,
                    reasons: vec![Reason::Withdrawn, Reason::Expired],
                    dispensable: false,
                },
            }),
            product: Some(ProductSummary {
                name: "Examplomab".into(),
                common_name: "examplomab".into(),
                strength: "10 mg".into(),
                form: "TABLET".into(),
                pack_size: "30".into(),
            }),
            alert: Some(AlertRef { id: "ALR-1".into(), code: AlertCode::A24 }),
            intermarket: false,
            warnings: vec![ScanWarning { code: WarningCode::LowercaseField, message: "check".into() }],
        }
    }

    #[test]
    fn a_kept_pack_answer_reads_back_into_the_answer_it_was_made_from() {
        let a = answer();
        let kept = pack_answer(&a);
        assert_eq!(read_pack_answer(&kept, today()), Ok(a.clone()));
        assert_eq!(pack_answer(&read_pack_answer(&kept, today()).unwrap()), kept);
        let unknown = PackAnswer { pack: None, product: None, alert: None, warnings: vec![], ..a };
        assert_eq!(read_pack_answer(&pack_answer(&unknown), today()), Ok(unknown));
    }

    #[test]
    fn a_kept_pack_answer_is_the_json_of_its_response_field_by_field() {
        let kept = pack_answer(&answer());
        assert!(kept.starts_with(
            r#"{"trx_id":"TRX-1","client_trx_id":"t-1","accepted":true,"return_code":"NMVS_SUCCESS","#
        ));
        assert!(kept.contains(r#""pack":{"scheme":"GTIN","product_code":"09501101530003","serial":"X4K9","batch":"ABC123","expiry":"271200","state":"ACTIVE","reasons":["WITHDRAWN","EXPIRED"],"dispensable":false}"#), "{kept}");
        assert!(kept.ends_with(r#""alert":{"id":"ALR-1","code":"A24"},"intermarket":false,"warnings":[{"code":"LOWERCASE_FIELD","message":"check"}]}"#), "{kept}");
    }

    #[test]
    fn a_kept_answer_that_does_not_read_names_the_field() {
        let kept = pack_answer(&answer()).replace("NMVS_SUCCESS", "NMVS_NOPE");
        assert!(read_pack_answer(&kept, today()).unwrap_err().starts_with("return_code"));
        let kept = pack_answer(&answer()).replace(r#""state":"ACTIVE""#, r#""state":"GONE""#);
        assert!(read_pack_answer(&kept, today()).unwrap_err().starts_with("pack.state"));
        assert!(read_pack_answer("{}", today()).is_err());
    }

    #[test]
    fn kept_bulk_answers_and_alerts_read_back() {
        let accepted = BulkAccepted { bulk_id: "BLK-1".into() };
        assert_eq!(bulk_accepted(&accepted), r#"{"bulk_id":"BLK-1"}"#);
        assert_eq!(read_bulk_accepted(&bulk_accepted(&accepted)), Ok(accepted));
        let row = BulkRowResult {
            serial: "S1".into(),
            product_code: "9501101530003".into(),
            accepted: false,
            code: ReturnCode::BulkDuplicateSerial,
            state: Some(PackState::Supplied),
            alert: None,
        };
        assert_eq!(read_bulk_result(&bulk_result(&row)), Ok(row));
        assert_eq!(BulkStatus::parse("DONE"), Some(BulkStatus::Done));
        let a = AlertView {
            id: "ALR-1".into(),
            code: AlertCode::A3,
            return_code: ReturnCode::parse("NMVS_NC_PC_02").unwrap(),
            market: MarketCode::new("DE").unwrap(),
            pack_market: MarketCode::new("SE").unwrap(),
            product_code: "09501101530003".into(),
            serial: Serial::new("S1").unwrap(),
            batch: "B1".into(),
            location: Location::new("DE-PHARMA-1").unwrap(),
            created_at: Timestamp::from_unix_millis(1_800_000_000_123),
            status: AlertStatus::Open,
            classification: None,
            comment: None,
            thread: Default::default(),
        };
        assert_eq!(read_alert(&alert(&a)), Ok(a.clone()));
        let value: serde_json::Value = serde_json::from_str(&alert(&a)).unwrap();
        assert_eq!(alert_value(&a), value);
    }
}
