//! The per-market part of a product version's master data, stored as a JSON array in the order
//! sent (the same document the SQLite hub engine stores). Every other hub row is decoded by
//! `openmvs_store::decode_hub`.

use openmvs_core::master_data::{MarketData, Wholesaler};
use openmvs_store::StoreResult;
use openmvs_store::decode::{corrupt, market};
use serde_json::{Value, json};

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
