//! Decoding the hub's stored rows into its records, for every hub engine, through the same
//! [`Columns`] and validating constructors as [`crate::decode`]: a corrupt row is reported as
//! corrupt, whichever database it came from.
//!
//! The per-market part of a product version's master data is stored as a document (JSON in both
//! engines); its text is decoded by the engine and handed to [`product_version`].

use openmvs_core::alert::{AlertStatus, Classification};
use openmvs_core::ids::{MarketCode, ProductCode};
use openmvs_core::master_data::{MarketData, ProductMaster, Wholesaler};
use openmvs_core::time::Timestamp;
use serde_json::{Value, json};

use crate::StoreResult;
use crate::decode::{Columns, batch, corrupt, expiry, market, markets, markets_to_text, product_code};
use crate::hub::*;

fn unsigned(v: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("{what} {v}")))
}

fn version(v: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| corrupt(format!("{what} {v}")))
}

fn at(r: &impl Columns, i: usize) -> StoreResult<Timestamp> {
    Ok(Timestamp::from_unix_millis(r.int(i)?))
}

/// A market list for storing: sorted and without repeats, so that every read gives it in market
/// order whatever order it was written in.
pub fn markets_text(m: &[MarketCode]) -> String {
    let mut m = m.to_vec();
    m.sort();
    m.dedup();
    markets_to_text(&m)
}

/// The per-market part of master data as stored: a JSON array, in the order sent.
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
pub fn market_data(s: &str) -> StoreResult<Vec<MarketData>> {
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

/// A stored, comma-separated market list (NULL for none, as an aggregate over no rows gives), in
/// market order.
pub fn market_set(s: Option<String>) -> StoreResult<Vec<MarketCode>> {
    let mut m = markets(s.as_deref().unwrap_or(""))?;
    m.sort();
    Ok(m)
}

/// The columns of an OBP, in the order [`obp`] reads them.
pub const OBP_COLUMNS: &str = "id, name, created_at, revoked_at, callback_url";

/// An OBP, from [`OBP_COLUMNS`].
pub fn obp(r: &impl Columns) -> StoreResult<ObpRecord> {
    Ok(ObpRecord {
        id: r.text(0)?.into(),
        name: r.text(1)?,
        created_at: at(r, 2)?,
        revoked_at: r.opt_int(3)?.map(Timestamp::from_unix_millis),
        callback_url: r.opt_text(4)?,
    })
}

/// A product, from the columns product_code, scheme, owner, current_version, created_at and the
/// markets it is withdrawn from (a comma-separated list, NULL for none).
pub fn product(r: &impl Columns) -> StoreResult<HubProductRecord> {
    Ok(HubProductRecord {
        product_code: product_code(&r.text(1)?, &r.text(0)?)?,
        owner: r.text(2)?.into(),
        current_version: version(r.int(3)?, "product version")?,
        created_at: at(r, 4)?,
        withdrawn: market_set(r.opt_text(5)?)?,
    })
}

/// A product version, from the columns version, name, common_name, form, strength, pack_type,
/// pack_size, market_data, created_at (the product code is the caller's); `market_data` decodes
/// the stored per-market document.
pub fn product_version<C: Columns>(
    pc: &ProductCode,
    r: &C,
    market_data: impl FnOnce(&str) -> StoreResult<Vec<MarketData>>,
) -> StoreResult<ProductVersionRecord> {
    let s = |i| r.text(i);
    Ok(ProductVersionRecord {
        version: version(r.int(0)?, "product version")?,
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

/// A batch, from the columns batch, product_version, expiry, expiry_year, markets and the markets
/// it is recalled in (a comma-separated list, NULL for none); the product code is the caller's.
pub fn batch_record(pc: &ProductCode, r: &impl Columns) -> StoreResult<HubBatchRecord> {
    let year = i32::try_from(r.int(3)?).map_err(|_| corrupt("expiry year"))?;
    Ok(HubBatchRecord {
        product_code: pc.clone(),
        batch: batch(&r.text(0)?)?,
        product_version: version(r.int(1)?, "batch product version")?,
        expiry: expiry(&r.text(2)?, year)?,
        markets: market_set(Some(r.text(4)?))?,
        recalled: market_set(r.opt_text(5)?)?,
    })
}

/// The columns of an upload, in the order [`upload`] reads them.
pub const UPLOAD_COLUMNS: &str =
    "id, obp, scheme, product_code, batch, status, received, rejected, created_at";

/// An upload, from [`UPLOAD_COLUMNS`]; its markets are read apart and added by the caller.
pub fn upload(r: &impl Columns) -> StoreResult<UploadRecord> {
    let status = r.text(5)?;
    Ok(UploadRecord {
        id: r.text(0)?.into(),
        obp: r.text(1)?.into(),
        product_code: product_code(&r.text(2)?, &r.text(3)?)?,
        batch: batch(&r.text(4)?)?,
        status: UploadStatus::parse(&status).ok_or_else(|| corrupt(format!("upload status '{status}'")))?,
        received: unsigned(r.int(6)?, "received count")?,
        rejected: unsigned(r.int(7)?, "rejected count")?,
        created_at: at(r, 8)?,
        markets: Vec::new(),
    })
}

/// One market of an upload, from the columns market, sent, acked starting at column `o`. A market
/// is DISTRIBUTED once the upload is validated (no more chunks will come) and it acknowledged
/// every chunk sent; a failed upload's markets stay PENDING, since what the OBP uploaded did not
/// all reach them.
pub fn upload_market(status: UploadStatus, r: &impl Columns, o: usize) -> StoreResult<UploadMarket> {
    let chunks_sent = unsigned(r.int(o + 1)?, "chunks sent")?;
    let chunks_acked = unsigned(r.int(o + 2)?, "chunks acknowledged")?;
    let ended = matches!(status, UploadStatus::Validated | UploadStatus::Distributed);
    Ok(UploadMarket {
        market: market(&r.text(o)?)?,
        chunks_sent,
        chunks_acked,
        status: if ended && chunks_acked >= chunks_sent {
            MarketDelivery::Distributed
        } else {
            MarketDelivery::Pending
        },
    })
}

/// A rejected line, from the columns line, serial, reason.
pub fn rejection(r: &impl Columns) -> StoreResult<UploadRejection> {
    Ok(UploadRejection { line: unsigned(r.int(0)?, "line")?, serial: r.text(1)?, reason: r.text(2)? })
}

/// The columns of a forwarded alert, in the order [`alert`] reads them.
pub const ALERT_COLUMNS: &str = "id, obp, market, product_code, alert, created_at, status, classification, \
                                 comment, thread, version";

/// A forwarded alert, from [`ALERT_COLUMNS`].
pub fn alert(r: &impl Columns) -> StoreResult<HubAlertRecord> {
    let status = r.text(6)?;
    Ok(HubAlertRecord {
        id: r.text(0)?.into(),
        obp: r.text(1)?.into(),
        market: market(&r.text(2)?)?,
        product_code: r.text(3)?,
        alert: r.text(4)?,
        created_at: at(r, 5)?,
        status: AlertStatus::parse(&status).ok_or_else(|| corrupt(format!("alert status '{status}'")))?,
        classification: r
            .opt_text(7)?
            .map(|c| Classification::parse(&c).ok_or_else(|| corrupt(format!("classification '{c}'"))))
            .transpose()?,
        comment: r.opt_text(8)?,
        thread: crate::decode::thread(&r.text(9)?)?,
        version: unsigned(r.int(10)?, "alert version")?,
    })
}
