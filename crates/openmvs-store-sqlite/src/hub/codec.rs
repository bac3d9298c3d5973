//! Conversions between the hub's rows and records. Stored text is decoded through the core's
//! validating constructors, as in the national engine, so a corrupt row is reported as corrupt.

use openmvs_core::alert::{AlertStatus, Classification};
use openmvs_core::ids::{MarketCode, ProductCode};
use openmvs_core::master_data::{MarketData, ProductMaster, Wholesaler};
use openmvs_core::time::Timestamp;
use openmvs_store::hub::*;
use openmvs_store::*;
use rusqlite::Row;
use serde_json::{Value, json};

use crate::codec::{batch, corrupt, expiry, market, markets, product_code, sql_err};

/// Market lists are stored sorted and without repeats, so that every read gives them in market
/// order whatever order they were written in.
pub fn markets_text(m: &[MarketCode]) -> String {
    let mut m = m.to_vec();
    m.sort();
    m.dedup();
    crate::codec::markets_to_text(&m)
}

/// A comma-separated list from `group_concat` (NULL when there is none), in market order.
fn market_set(s: Option<String>) -> StoreResult<Vec<MarketCode>> {
    let mut m = markets(s.as_deref().unwrap_or(""))?;
    m.sort();
    Ok(m)
}

fn count(r: &Row<'_>, i: usize, what: &str) -> StoreResult<u64> {
    let v: i64 = r.get(i).map_err(sql_err)?;
    u64::try_from(v).map_err(|_| corrupt(format!("{what} {v}")))
}

fn at(r: &Row<'_>, i: usize) -> StoreResult<Timestamp> {
    Ok(Timestamp::from_unix_millis(r.get(i).map_err(sql_err)?))
}

pub const OBP_COLUMNS: &str = "id, name, created_at, revoked_at, callback_url";

pub fn obp(r: &Row<'_>) -> StoreResult<ObpRecord> {
    Ok(ObpRecord {
        id: r.get(0).map_err(sql_err)?,
        name: r.get(1).map_err(sql_err)?,
        created_at: at(r, 2)?,
        revoked_at: r.get::<_, Option<i64>>(3).map_err(sql_err)?.map(Timestamp::from_unix_millis),
        callback_url: r.get(4).map_err(sql_err)?,
    })
}

/// Columns: product_code, scheme, owner, current_version, created_at, withdrawn markets (concatenated).
pub fn product(r: &Row<'_>) -> StoreResult<HubProductRecord> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    Ok(HubProductRecord {
        product_code: product_code(&s(1)?, &s(0)?)?,
        owner: s(2)?,
        current_version: r.get(3).map_err(sql_err)?,
        created_at: at(r, 4)?,
        withdrawn: market_set(r.get(5).map_err(sql_err)?)?,
    })
}

/// The per-market part of master data as a JSON array, in the order sent.
pub fn market_data_json(markets: &[MarketData]) -> String {
    let markets = markets
        .iter()
        .map(|m| {
            json!({
                "market": m.market.as_str(),
                "national_code": m.national_code,
                "mah_name": m.mah_name,
                "mah_address": m.mah_address,
                "wholesalers": m.wholesalers.iter().map(|w| json!({"id": w.id, "name": w.name})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Value::Array(markets).to_string()
}

/// Reads back what [`market_data_json`] wrote.
fn market_data(s: &str) -> StoreResult<Vec<MarketData>> {
    let bad = |what: &str| corrupt(format!("market data: {what}"));
    let v: Value = serde_json::from_str(s).map_err(|e| bad(&e.to_string()))?;
    let text = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| bad(k));
    let list = |o: &Value, k: &str| o.get(k).and_then(Value::as_array).cloned().ok_or_else(|| bad(k));
    let mut out = Vec::new();
    for m in v.as_array().ok_or_else(|| bad("not an array"))? {
        let wholesalers = list(m, "wholesalers")?
            .iter()
            .map(|w| Ok(Wholesaler { id: text(w, "id")?, name: text(w, "name")? }))
            .collect::<StoreResult<Vec<_>>>()?;
        out.push(MarketData {
            market: market(&text(m, "market")?)?,
            national_code: text(m, "national_code")?,
            mah_name: text(m, "mah_name")?,
            mah_address: text(m, "mah_address")?,
            wholesalers,
        });
    }
    Ok(out)
}

/// Columns: version, name, common_name, form, strength, pack_type, pack_size, market_data,
/// created_at (the product code is known to the caller).
pub fn product_version(pc: &ProductCode, r: &Row<'_>) -> StoreResult<ProductVersionRecord> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    Ok(ProductVersionRecord {
        version: r.get(0).map_err(sql_err)?,
        master: ProductMaster {
            product_code: pc.clone(),
            name: s(1)?,
            common_name: s(2)?,
            form: s(3)?,
            strength: s(4)?,
            pack_type: s(5)?,
            pack_size: s(6)?,
            markets: market_data(&s(7)?)?,
        },
        created_at: at(r, 8)?,
    })
}

/// Columns: batch, product_version, expiry, expiry_year, markets, recalled markets (concatenated).
pub fn batch_record(pc: &ProductCode, r: &Row<'_>) -> StoreResult<HubBatchRecord> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    Ok(HubBatchRecord {
        product_code: pc.clone(),
        batch: batch(&s(0)?)?,
        product_version: r.get(1).map_err(sql_err)?,
        expiry: expiry(&s(2)?, r.get(3).map_err(sql_err)?)?,
        markets: market_set(r.get(4).map_err(sql_err)?)?,
        recalled: market_set(r.get(5).map_err(sql_err)?)?,
    })
}

pub const UPLOAD_COLUMNS: &str =
    "id, obp, scheme, product_code, batch, status, received, rejected, created_at";

/// An upload row; its markets are read apart and added by the caller.
pub fn upload(r: &Row<'_>) -> StoreResult<UploadRecord> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    let status = s(5)?;
    Ok(UploadRecord {
        id: s(0)?,
        obp: s(1)?,
        product_code: product_code(&s(2)?, &s(3)?)?,
        batch: batch(&s(4)?)?,
        status: UploadStatus::parse(&status).ok_or_else(|| corrupt(format!("upload status '{status}'")))?,
        received: count(r, 6, "received count")?,
        rejected: count(r, 7, "rejected count")?,
        created_at: at(r, 8)?,
        markets: Vec::new(),
    })
}

/// Columns: market, sent, acked. A market is DISTRIBUTED once the upload is validated (no more
/// chunks will come) and it acknowledged every chunk sent; a failed upload's markets stay PENDING,
/// since what the OBP uploaded did not all reach them.
pub fn upload_market(status: UploadStatus, r: &Row<'_>) -> StoreResult<UploadMarket> {
    let chunks_sent = count(r, 1, "chunks sent")?;
    let chunks_acked = count(r, 2, "chunks acknowledged")?;
    let ended = matches!(status, UploadStatus::Validated | UploadStatus::Distributed);
    Ok(UploadMarket {
        market: market(&r.get::<_, String>(0).map_err(sql_err)?)?,
        chunks_sent,
        chunks_acked,
        status: if ended && chunks_acked >= chunks_sent {
            MarketDelivery::Distributed
        } else {
            MarketDelivery::Pending
        },
    })
}

/// Columns: line, serial, reason.
pub fn rejection(r: &Row<'_>) -> StoreResult<UploadRejection> {
    Ok(UploadRejection {
        line: count(r, 0, "line")?,
        serial: r.get(1).map_err(sql_err)?,
        reason: r.get(2).map_err(sql_err)?,
    })
}

pub const ALERT_COLUMNS: &str = "id, obp, market, source_alert_id, product_code, alert, created_at, status, \
                                 classification, comment";

pub fn alert(r: &Row<'_>) -> StoreResult<HubAlertRecord> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    let status = s(7)?;
    let classification: Option<String> = r.get(8).map_err(sql_err)?;
    Ok(HubAlertRecord {
        id: s(0)?,
        obp: s(1)?,
        market: market(&s(2)?)?,
        source_alert_id: s(3)?,
        product_code: s(4)?,
        alert: s(5)?,
        created_at: at(r, 6)?,
        status: AlertStatus::parse(&status).ok_or_else(|| corrupt(format!("alert status '{status}'")))?,
        classification: classification
            .map(|c| Classification::parse(&c).ok_or_else(|| corrupt(format!("classification '{c}'"))))
            .transpose()?,
        comment: r.get(9).map_err(sql_err)?,
    })
}
