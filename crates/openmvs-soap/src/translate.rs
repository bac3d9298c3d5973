//! Requests read from envelopes, as the requests of the JSON API: the national system takes them
//! unvalidated and checks them as it checks those, so a field at fault is refused the same way,
//! named by its JSON name, and audited with the request as received.

use openmvs_core::pack::Command;
use openmvs_wire::api::{BulkRequest, BulkRow, PackRequest};

use crate::read::{MixedItem, Product, RequestHeader};

/// A single-pack request (G110-G180).
pub fn pack_request(header: &RequestHeader, product: &Product, serial: &str) -> PackRequest {
    PackRequest {
        client_trx_id: Some(header.client_trx_id.clone()),
        scheme: Some(product.scheme.clone()),
        product_code: Some(product.code.clone()),
        serial: Some(serial.to_owned()),
        batch: Some(product.batch.clone()),
        expiry: Some(product.expiry.clone()),
        scan: None,
        entry_mode: None,
    }
}

/// A bulk on packs of one batch (G115-G185): the homogeneous form of `POST /v1/bulk`.
pub fn bulk_request(
    header: &RequestHeader,
    command: Command,
    product: &Product,
    serials: &[String],
) -> BulkRequest {
    BulkRequest {
        client_trx_id: Some(header.client_trx_id.clone()),
        operation: Some(command.to_string()),
        scheme: Some(product.scheme.clone()),
        product_code: Some(product.code.clone()),
        batch: Some(product.batch.clone()),
        expiry: Some(product.expiry.clone()),
        serials: Some(serials.to_vec()),
        transactions: None,
    }
}

/// A mixed bulk (G195): the mixed form of `POST /v1/bulk`, and each item's `ClientTrxId`, kept
/// with the job as the row's label so that the result (G196) echoes it.
pub fn mixed_request(header: &RequestHeader, items: &[MixedItem]) -> (BulkRequest, Vec<String>) {
    let rows = items
        .iter()
        .map(|i| BulkRow {
            operation: i.command.to_string(),
            scheme: i.product.scheme.clone(),
            product_code: i.product.code.clone(),
            serial: i.serial.clone(),
            batch: i.product.batch.clone(),
            expiry: i.product.expiry.clone(),
        })
        .collect();
    let labels = items.iter().map(|i| i.client_trx_id.clone()).collect();
    (
        BulkRequest {
            client_trx_id: Some(header.client_trx_id.clone()),
            transactions: Some(rows),
            ..BulkRequest::default()
        },
        labels,
    )
}
