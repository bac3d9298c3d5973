//! Turns a request body into validated domain values, or into an error naming the field and the
//! rule. Nothing here touches storage.

use openmvs_core::ids::{Batch, ClientTrxId, Expiry, IdError, PackIdentifier, ProductCode, Scheme, Serial};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::scan::{self, ScanWarning};
use openmvs_core::time::Date;
use openmvs_wire::api::PackRequest;
use sha2::{Digest, Sha256};

use crate::ApiError;

/// The longest `client_trx_id` accepted.
pub const MAX_CLIENT_TRX_ID: usize = 100;
/// The longest raw scan accepted, in bytes.
pub const MAX_SCAN_BYTES: usize = 512;

/// A single-pack request, validated.
#[derive(Debug, Clone)]
pub struct PackInput {
    /// The client's transaction id.
    pub client_trx_id: ClientTrxId,
    /// The pack identifier.
    pub id: PackIdentifier,
    /// Scan-integrity hints: the parser's, when a raw scan was given. Fields sent explicitly have
    /// none here; a failure that a scanner's corruption explains adds that corruption's warning
    /// when the request is decided (`National::decide_read`), whichever way the code came.
    pub warnings: Vec<ScanWarning>,
}

/// Checks a client transaction id: 1-100 printable ASCII characters.
pub fn client_trx_id(v: Option<&str>) -> Result<ClientTrxId, ApiError> {
    let Some(v) = v else { return Err(ApiError::field("client_trx_id", "is required")) };
    if v.is_empty() || v.len() > MAX_CLIENT_TRX_ID || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::field(
            "client_trx_id",
            format!("must be 1-{MAX_CLIENT_TRX_ID} printable ASCII characters without spaces"),
        ));
    }
    Ok(ClientTrxId::new(v))
}

fn id_error(field: &str, value: &str, e: &IdError) -> ApiError {
    let code = if matches!(e, IdError::CheckDigit { .. }) {
        ReturnCode::CheckDigit
    } else {
        ReturnCode::MalformedRequest
    };
    let mut err = ApiError::new(code).with(field, format!("'{}' {e}", value.escape_default()));
    if code == ReturnCode::CheckDigit {
        err.message = format!("The product code '{value}' fails its check digit: {e}.");
    }
    err
}

/// A product code of a scheme given as text.
pub fn product_code(
    field_prefix: &str,
    scheme: Option<&str>,
    code: Option<&str>,
) -> Result<ProductCode, ApiError> {
    let f = |name: &str| format!("{field_prefix}{name}");
    let scheme = scheme.ok_or_else(|| ApiError::field(f("scheme"), "is required (GTIN or PPN)"))?;
    let scheme = Scheme::parse(scheme).map_err(|e| ApiError::field(f("scheme"), e.to_string()))?;
    let code = code.ok_or_else(|| ApiError::field(f("product_code"), "is required"))?;
    ProductCode::new(scheme, code).map_err(|e| id_error(&f("product_code"), code, &e))
}

/// A pack's key given as text (the scheme, product code and serial of a path such as
/// `/v1/audit/packs/{scheme}/{product_code}/{serial}`), checked by the rules of the pack routes.
pub fn pack_key(scheme: &str, code: &str, serial: &str) -> Result<(ProductCode, Serial), ApiError> {
    let product_code = product_code("", Some(scheme), Some(code))?;
    let serial = Serial::new(serial).map_err(|err| id_error("serial", serial, &err))?;
    Ok((product_code, serial))
}

/// The identifier given field by field (`field_prefix` locates it inside a larger body, e.g. `transactions[3].`).
pub fn fields(
    field_prefix: &str,
    scheme: Option<&str>,
    code: Option<&str>,
    serial: Option<&str>,
    batch: Option<&str>,
    expiry: Option<&str>,
    today: Date,
) -> Result<PackIdentifier, ApiError> {
    let f = |name: &str| format!("{field_prefix}{name}");
    let product_code = product_code(field_prefix, scheme, code)?;
    let req = |name: &str, v: Option<&str>| {
        v.map(str::to_owned).ok_or_else(|| ApiError::field(f(name), "is required"))
    };
    let s = req("serial", serial)?;
    let b = req("batch", batch)?;
    let e = req("expiry", expiry)?;
    Ok(PackIdentifier {
        product_code,
        serial: Serial::new(&s).map_err(|err| id_error(&f("serial"), &s, &err))?,
        batch: Batch::new(&b).map_err(|err| id_error(&f("batch"), &b, &err))?,
        expiry: Expiry::parse(&e, today).map_err(|err| id_error(&f("expiry"), &e, &err))?,
        nhrn: None,
    })
}

/// Validates a single-pack request body.
pub fn pack_input(body: &PackRequest, today: Date) -> Result<PackInput, ApiError> {
    let client_trx_id = client_trx_id(body.client_trx_id.as_deref())?;
    if let Some(mode) = &body.entry_mode
        && mode != "SCANNED"
        && mode != "MANUAL"
    {
        return Err(ApiError::field("entry_mode", format!("'{mode}' is not SCANNED or MANUAL")));
    }
    let any_field = [&body.scheme, &body.product_code, &body.serial, &body.batch, &body.expiry]
        .iter()
        .any(|f| f.is_some());
    match &body.scan {
        Some(_) if any_field => Err(ApiError::field(
            "scan",
            "give either scan or the fields scheme, product_code, serial, batch and expiry, not both",
        )),
        Some(raw) => {
            if raw.len() > MAX_SCAN_BYTES {
                return Err(ApiError::field(
                    "scan",
                    format!("is {} bytes, at most {MAX_SCAN_BYTES}", raw.len()),
                ));
            }
            let parsed = scan::parse(raw.as_bytes(), today).map_err(|e| {
                let code =
                    if e.is_check_digit() { ReturnCode::CheckDigit } else { ReturnCode::MalformedRequest };
                ApiError::new(code).with("scan", e.to_string())
            })?;
            Ok(PackInput { client_trx_id, warnings: parsed.warnings, id: parsed.id })
        }
        None => {
            let id = fields(
                "",
                body.scheme.as_deref(),
                body.product_code.as_deref(),
                body.serial.as_deref(),
                body.batch.as_deref(),
                body.expiry.as_deref(),
                today,
            )?;
            Ok(PackInput { client_trx_id, id, warnings: Vec::new() })
        }
    }
}

/// A hash of what a request asks, so a replay with the same `client_trx_id` can be told from a
/// different request reusing it. Two requests for the same operation on the same identifier are
/// the same request however the identifier was entered (scan or fields).
pub fn request_hash(operation: &str, id: &PackIdentifier) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        operation,
        id.product_code.scheme().as_str(),
        id.product_code.as_str(),
        id.serial.as_str(),
        id.batch.as_str(),
        id.expiry.as_str(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// A hash of arbitrary canonical bytes (bulk requests).
pub fn bytes_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        Date::new(2026, 11, 29).unwrap()
    }

    fn body() -> PackRequest {
        PackRequest {
            client_trx_id: Some("t-1".into()),
            scheme: Some("GTIN".into()),
            product_code: Some("09501101530003".into()),
            serial: Some("X4K9P7Q2M8R5".into()),
            batch: Some("ABC123".into()),
            expiry: Some("271231".into()),
            ..PackRequest::default()
        }
    }

    fn refused(b: PackRequest) -> ApiError {
        pack_input(&b, today()).unwrap_err()
    }

    #[test]
    fn fields_and_scan_give_the_same_identifier_and_hash() {
        let a = pack_input(&body(), today()).unwrap();
        let scan = PackRequest {
            client_trx_id: Some("t-2".into()),
            scan: Some("]d201095011015300031727123110ABC123\u{1d}21X4K9P7Q2M8R5".into()),
            ..PackRequest::default()
        };
        let b = pack_input(&scan, today()).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(request_hash("supply", &a.id), request_hash("supply", &b.id));
        assert_ne!(request_hash("supply", &a.id), request_hash("verify", &a.id));
    }

    #[test]
    fn each_missing_or_bad_field_is_named() {
        let cases: Vec<(PackRequest, &str, ReturnCode)> = vec![
            (PackRequest { client_trx_id: None, ..body() }, "client_trx_id", ReturnCode::MalformedRequest),
            (
                PackRequest { client_trx_id: Some("a b".into()), ..body() },
                "client_trx_id",
                ReturnCode::MalformedRequest,
            ),
            (PackRequest { scheme: None, ..body() }, "scheme", ReturnCode::MalformedRequest),
            (PackRequest { scheme: Some("gtin".into()), ..body() }, "scheme", ReturnCode::MalformedRequest),
            (
                PackRequest { product_code: Some("09501101530004".into()), ..body() },
                "product_code",
                ReturnCode::CheckDigit,
            ),
            (PackRequest { serial: None, ..body() }, "serial", ReturnCode::MalformedRequest),
            (PackRequest { serial: Some("A".repeat(21)), ..body() }, "serial", ReturnCode::MalformedRequest),
            (PackRequest { batch: Some("LOT 1".into()), ..body() }, "batch", ReturnCode::MalformedRequest),
            (PackRequest { expiry: Some("271301".into()), ..body() }, "expiry", ReturnCode::MalformedRequest),
            (
                PackRequest { entry_mode: Some("KEYED".into()), ..body() },
                "entry_mode",
                ReturnCode::MalformedRequest,
            ),
            (PackRequest { scan: Some("x".into()), ..body() }, "scan", ReturnCode::MalformedRequest),
        ];
        for (b, field, code) in cases {
            let e = refused(b);
            assert_eq!((e.code, e.details[0].field.as_str()), (code, field), "{e:?}");
        }
    }

    #[test]
    fn an_unreadable_scan_is_refused_with_the_parser_reason() {
        let b = PackRequest {
            client_trx_id: Some("t".into()),
            scan: Some("]d201095011015300041727123110ABC123\u{1d}21X".into()),
            ..PackRequest::default()
        };
        let e = refused(b);
        assert_eq!(e.code, ReturnCode::CheckDigit);
        assert_eq!(e.details[0].field, "scan");
    }
}
