//! The per-market part of a product version's master data is stored as the JSON document
//! `openmvs_store::decode_hub` writes and reads, the same on every engine; every other hub row is
//! decoded there too.

pub use openmvs_store::decode_hub::{market_data, market_data_json};
