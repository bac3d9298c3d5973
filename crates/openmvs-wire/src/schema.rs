//! The OpenAPI schemas of what the wire carries as plain strings: the enumerations, built from the
//! core's own lists so that a document cannot name a value the code does not know, and the
//! identifiers, with the lengths and character sets the core checks.
//!
//! A shape in this crate names one of these with `#[schema(value_type = schema::PackState)]` on
//! a `String` field; each becomes a named schema under `components/schemas` of the documents that
//! `openmvs-http` serves. What a pattern cannot say (a check digit, a date that exists) the
//! description says, and the server answers 400 naming the field.

use std::borrow::Cow;

use openmvs_core::alert::{AlertStatus, Classification};
use openmvs_core::answer::BulkStatus;
use openmvs_core::ids::{Batch, Location, Serial};
use openmvs_core::pack::{Command, Operation, PackState, Reason};
use openmvs_core::return_code::{AlertCode, CodeKind, ReturnCode};
use openmvs_core::roles::Role;
use openmvs_core::scan::WarningCode;
use openmvs_core::upload::{MarketDelivery, UploadStatus};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// The longest `client_trx_id`; the national system refuses a longer one (400 naming it).
pub const MAX_CLIENT_TRX_ID: usize = 100;

/// The GS1 character set 82 that serials and batches are written in, as a regular-expression
/// class (ECMA-262, as OpenAPI 3.1 reads patterns).
pub const CSET82_CLASS: &str = r#"[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]"#;

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).description(Some(description))
}

/// A named schema: `$name` is what the documents call it, the body builds it.
macro_rules! named_schema {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                let builder: ObjectBuilder = $body;
                builder.into()
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

/// A string that is one of `values`, the first of them as its example.
fn one_of<'a>(description: &str, values: impl IntoIterator<Item = &'a str>) -> ObjectBuilder {
    let values: Vec<&str> = values.into_iter().collect();
    let example = values.first().map(|v| serde_json::Value::from(*v));
    string(description).enum_values(Some(values)).examples(example)
}

named_schema!(
    /// `GTIN` or `PPN`.
    Scheme,
    "Scheme",
    one_of("The product code's scheme.", ["GTIN", "PPN"])
);

named_schema!(
    /// A product code: 14 digits for a GTIN, 12 characters for a PPN.
    ProductCode,
    "ProductCode",
    string(
        "A product code. GTIN: 14 digits (8, 12 or 13 are accepted and padded to 14), with a valid \
         GS1 check digit; PPN: 12 characters, `11` + PZN + two check digits. A code whose check \
         digit fails is refused with 400 `NMVS_FE_GR_01`.",
    )
    .pattern(Some("^(?:[0-9]{8}|[0-9]{12,14}|[0-9A-Z]{10}[0-9]{2})$"))
    .examples([serde_json::json!("09501101530003")])
);

named_schema!(
    /// A serial number.
    SerialNumber,
    "Serial",
    string("A serial number: 1 to 20 characters of GS1 character set 82, case-sensitive, taken as is.")
        .pattern(Some(format!("^{CSET82_CLASS}{{1,{}}}$", Serial::MAX_LEN)))
        .min_length(Some(1))
        .max_length(Some(Serial::MAX_LEN))
        .examples([serde_json::json!("X4K9P7Q2M8R5")])
);

named_schema!(
    /// A batch number.
    BatchNumber,
    "Batch",
    string("A batch (lot) number: 1 to 20 characters of GS1 character set 82, case-sensitive, taken as is.")
        .pattern(Some(format!("^{CSET82_CLASS}{{1,{}}}$", Batch::MAX_LEN)))
        .min_length(Some(1))
        .max_length(Some(Batch::MAX_LEN))
        .examples([serde_json::json!("ABC123")])
);

named_schema!(
    /// An expiry as encoded, `YYMMDD`.
    ExpiryDate,
    "Expiry",
    string(
        "The expiry exactly as encoded, `YYMMDD`; `DD` = `00` means the month's last day. A date \
         that does not exist (`270231`) is refused with 400 naming the field.",
    )
    .pattern(Some("^[0-9]{2}(?:0[1-9]|1[0-2])(?:[0-2][0-9]|3[01])$"))
    .min_length(Some(6))
    .max_length(Some(6))
    .examples([serde_json::json!("271231")])
);

named_schema!(
    /// A market code.
    Market,
    "MarketCode",
    string("A market: an ISO 3166-1 alpha-2 code in upper case.")
        .pattern(Some("^[A-Z]{2}$"))
        .min_length(Some(2))
        .max_length(Some(2))
        .examples([serde_json::json!("DE")])
);

named_schema!(
    /// A premises.
    LocationCode,
    "Location",
    string("A location (premises): 1 to 64 letters, digits, `.`, `_`, `:` or `-`.")
        .pattern(Some(format!("^[A-Za-z0-9._:-]{{1,{}}}$", Location::MAX_LEN)))
        .examples([serde_json::json!("DE-PH-0001")])
);

named_schema!(
    /// A client's id of one transaction.
    ClientTrxId,
    "ClientTrxId",
    string(
        "The client's id of this transaction, unique per client: 1 to 100 printable ASCII \
         characters without spaces. The same id with the same request answers the first answer \
         again; with a different request it is refused with 409 `NMVS_TE_TX_01`.",
    )
    .pattern(Some(format!("^[!-~]{{1,{MAX_CLIENT_TRX_ID}}}$")))
    .min_length(Some(1))
    .max_length(Some(MAX_CLIENT_TRX_ID))
    .examples([serde_json::json!("pos7-000123")])
);

named_schema!(
    /// A time, RFC 3339 UTC.
    Time,
    "Timestamp",
    string("A time, RFC 3339 in UTC.")
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .examples([serde_json::json!("2026-12-06T09:30:00.000Z")])
);

named_schema!(
    /// A state of a pack.
    PackStateName,
    "PackState",
    one_of("The state of a pack in a market.", PackState::ALL.map(PackState::as_str))
);

named_schema!(
    /// Why an active pack is not dispensable.
    ReasonName,
    "Reason",
    one_of(
        "Why a pack may not be dispensed whatever its state.",
        [Reason::Expired, Reason::Recalled, Reason::Withdrawn].map(Reason::as_str),
    )
);

named_schema!(
    /// How the identifier was entered.
    EntryMode,
    "EntryMode",
    one_of("How the identifier was entered at the terminal.", ["SCANNED", "MANUAL"])
);

named_schema!(
    /// Where an alert's investigation is.
    AlertStatusName,
    "AlertStatus",
    one_of("Where an alert's investigation stands.", AlertStatus::ALL.map(AlertStatus::as_str))
);

named_schema!(
    /// What an investigation concluded.
    ClassificationName,
    "Classification",
    one_of("What an investigation concluded; given when an alert is closed.", Classification::ALL.map(Classification::as_str))
);

named_schema!(
    /// An alert code.
    AlertCodeName,
    "AlertCode",
    one_of(
        "The alert's code: a hub alert code, or `SERIAL_GUESSING` for the NMVO's alert about a client.",
        AlertCode::ALL.map(AlertCode::as_str),
    )
);

named_schema!(
    /// A return code.
    ReturnCodeName,
    "ReturnCode",
    one_of(
        "A return code of the catalogue (`GET /v1/return-codes`).",
        ReturnCode::ALL.iter().map(|c| c.as_str()),
    )
);

named_schema!(
    /// Where a return code is answered.
    CodeKindName,
    "CodeKind",
    one_of(
        "Where a code is answered: `OUTCOME` in a processed request's body (HTTP 200), `ERROR` as \
         an HTTP error, `HUB` as a refusal of the hub, `AGENT` by a pharmacy's offline agent in \
         place of the national system (HTTP 202).",
        [CodeKind::Outcome, CodeKind::Error, CodeKind::Hub, CodeKind::Agent].map(CodeKind::as_str),
    )
);

named_schema!(
    /// Where a bulk job is.
    BulkStatusName,
    "BulkStatus",
    one_of(
        "Where a bulk job is.",
        [BulkStatus::Pending, BulkStatus::Running, BulkStatus::Done].map(BulkStatus::as_str),
    )
);

/// Every name a bulk row may give its operation: `verify`, each operation an end user may ask
/// for, and `<operation>-undo` for each undoable one.
pub fn bulk_operations() -> Vec<String> {
    let ops = end_user_operations();
    let mut names = vec![Command::Verify.to_string()];
    names.extend(ops.clone().map(|o| Command::Set(o).to_string()));
    names.extend(ops.filter(|o| o.is_undoable()).map(|o| Command::Undo(o).to_string()));
    names
}

named_schema!(
    /// The operation of a bulk row.
    BulkOperation,
    "BulkOperation",
    one_of(
        "The operation of a bulk row: a single-pack operation, or `<operation>-undo`.",
        bulk_operations().iter().map(String::as_str),
    )
);

named_schema!(
    /// The operation a single-pack route names.
    PackOperation,
    "PackOperation",
    one_of(
        "`verify`, or the operation that decommissions the pack.",
        std::iter::once("verify").chain(end_user_operations().map(Operation::as_str)),
    )
);

named_schema!(
    /// The operation an undo route names.
    UndoableOperation,
    "UndoableOperation",
    one_of(
        "The operation to undo (undoing `lock` is unlock).",
        end_user_operations().filter(|o| o.is_undoable()).map(Operation::as_str),
    )
);

/// The operations an end user may name in a path: all but the OBP's check-out.
fn end_user_operations() -> impl Iterator<Item = Operation> + Clone {
    Operation::ALL.into_iter().filter(|o| *o != Operation::CheckOut)
}

named_schema!(
    /// A role.
    RoleName,
    "Role",
    one_of("The role of a client.", Role::ALL.map(Role::as_str))
);

named_schema!(
    /// Whether a client may log in.
    ClientAccess,
    "ClientAccess",
    one_of("`DISABLED`: the client's tokens are refused and it gets no new one.", ["ENABLED", "DISABLED"])
);

named_schema!(
    /// A scan-integrity hint's code.
    WarningCodeName,
    "WarningCode",
    one_of("A scan-integrity hint's code.", WarningCode::ALL.map(WarningCode::as_str))
);

named_schema!(
    /// Where an upload is.
    UploadStatusName,
    "UploadStatus",
    one_of(
        "Where an upload is.",
        [UploadStatus::Received, UploadStatus::Validated, UploadStatus::Distributed, UploadStatus::Failed]
            .map(UploadStatus::as_str),
    )
);

named_schema!(
    /// Where an upload is in one market.
    MarketDeliveryName,
    "MarketDelivery",
    one_of(
        "Where an upload is in one market.",
        [MarketDelivery::Pending, MarketDelivery::Distributed].map(MarketDelivery::as_str),
    )
);

named_schema!(
    /// A state an OBP may set at the hub.
    ObpPackState,
    "ObpPackState",
    one_of(
        "A state an OBP may set at the hub; with `undo`, only `CHECKED_OUT`.",
        PackState::ALL
            .into_iter()
            .filter(|s| openmvs_core::obp_states::obp_operation(*s).is_some())
            .map(PackState::as_str),
    )
);

named_schema!(
    /// A pack's state in one market, as the hub's pack query shows it.
    MarketPackStateName,
    "MarketPackState",
    one_of(
        "The pack's state in the market, or `UNKNOWN` when the market did not answer or does not hold the pack yet.",
        PackState::ALL.map(PackState::as_str).into_iter().chain(["UNKNOWN"]),
    )
);

named_schema!(
    /// A reason in the hub's pack query.
    MarketPackReason,
    "MarketPackReason",
    one_of(
        "Why the pack may not be dispensed; for `UNKNOWN`, why its state is unknown.",
        [Reason::Expired, Reason::Recalled, Reason::Withdrawn]
            .map(Reason::as_str)
            .into_iter()
            .chain(["UNREACHABLE", "NOT_DISTRIBUTED"]),
    )
);

named_schema!(
    /// An OpenAPI document.
    OpenApiDocument,
    "OpenApiDocument",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("An OpenAPI 3.1 document."))
        .property("openapi", string("The OpenAPI version.").pattern(Some("^3\\.1\\.[0-9]+$")))
        .required("openapi")
        .property("info", ObjectBuilder::new().schema_type(Type::Object))
        .required("info")
        .property("paths", ObjectBuilder::new().schema_type(Type::Object))
        .required("paths")
);

named_schema!(
    /// Any JSON value.
    AnyJson,
    "AnyJson",
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some("Any JSON value: the JSON as it was received or answered, or a string where it was not JSON."))
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_operations_are_the_commands_the_core_parses() {
        let ops = bulk_operations();
        assert!(ops.iter().all(|o| Command::parse(o).is_some()), "{ops:?}");
        assert!(ops.contains(&"supply-undo".to_owned()) && !ops.contains(&"destroy-undo".to_owned()));
        assert!(!ops.contains(&"check-out".to_owned()));
    }
}
