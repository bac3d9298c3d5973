//! Conversions between rows and records. Stored text is decoded through the core's validating
//! constructors, so a corrupt row is reported as corrupt instead of being trusted.

use openmvs_audit::{Checkpoint, Entry, Sealed};
use openmvs_core::alert::{AlertStatus, Classification};
use openmvs_core::ids::{Batch, Expiry, Location, MarketCode, ProductCode, Scheme};
use openmvs_core::pack::{Change, Command, Pack, PackState};
use openmvs_core::return_code::{AlertCode, ReturnCode};
use openmvs_core::roles::Role;
use openmvs_core::time::{Date, Timestamp};
use openmvs_store::*;
use rusqlite::Row;

pub fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub fn sql_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => corrupt(e),
        e => StoreError::Unavailable(e.to_string()),
    }
}

/// Expiries are stored as encoded together with the year they were resolved to when they arrived,
/// so their meaning never drifts with the day they are read on: parsing against 1 January of that
/// year gives back exactly that century.
pub fn expiry(s: &str, year: i32) -> StoreResult<Expiry> {
    let day = Date::new(year, 1, 1).ok_or_else(|| corrupt(format!("expiry year {year}")))?;
    let e = Expiry::parse(s, day).map_err(|e| corrupt(format!("expiry '{s}': {e}")))?;
    if e.date().year() != year {
        return Err(corrupt(format!("expiry '{s}' does not fall in its stored year {year}")));
    }
    Ok(e)
}

pub fn batch(s: &str) -> StoreResult<Batch> {
    Batch::new(s).map_err(|e| corrupt(format!("batch '{s}': {e}")))
}

pub fn product_code(scheme: &str, code: &str) -> StoreResult<ProductCode> {
    let scheme = Scheme::parse(scheme).map_err(|e| corrupt(format!("scheme: {e}")))?;
    ProductCode::new(scheme, code).map_err(|e| corrupt(format!("product code '{code}': {e}")))
}

pub fn market(s: &str) -> StoreResult<MarketCode> {
    MarketCode::new(s).map_err(|e| corrupt(format!("market: {e}")))
}

pub fn markets_to_text(m: &[MarketCode]) -> String {
    m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
}

pub fn markets(s: &str) -> StoreResult<Vec<MarketCode>> {
    s.split(',').filter(|p| !p.is_empty()).map(market).collect()
}

/// Columns: batch, state, last_command, last_location, last_at, synced_from, repeats, version.
pub fn stored_pack(r: &Row<'_>) -> StoreResult<StoredPack> {
    let get_s = |i| r.get::<_, String>(i).map_err(sql_err);
    let get_o = |i| r.get::<_, Option<String>>(i).map_err(sql_err);
    let state = get_s(1)?;
    let state = PackState::parse(&state).ok_or_else(|| corrupt(format!("pack state '{state}'")))?;
    let last_change = match (get_o(2)?, get_o(3)?, r.get::<_, Option<i64>>(4).map_err(sql_err)?) {
        (Some(cmd), Some(loc), Some(at)) => Some(Change {
            command: Command::parse(&cmd).ok_or_else(|| corrupt(format!("command '{cmd}'")))?,
            location: Location::new(&loc).map_err(|e| corrupt(format!("location: {e}")))?,
            at: Timestamp::from_unix_millis(at),
            synced_from: get_o(5)?.as_deref().map(market).transpose()?,
        }),
        _ => None,
    };
    let repeats: i64 = r.get(6).map_err(sql_err)?;
    let version: i64 = r.get(7).map_err(sql_err)?;
    Ok(StoredPack {
        pack: Pack {
            batch: batch(&get_s(0)?)?,
            state,
            last_change,
            repeats: u8::try_from(repeats).map_err(|_| corrupt("repeats"))?,
        },
        version: u64::try_from(version).map_err(|_| corrupt("version"))?,
    })
}

/// The columns of a pack's change, for binding.
pub fn change_columns(p: &Pack) -> (Option<String>, Option<&str>, Option<i64>, Option<&str>) {
    match &p.last_change {
        Some(c) => (
            Some(c.command.to_string()),
            Some(c.location.as_str()),
            Some(c.at.unix_millis()),
            c.synced_from.as_ref().map(|m| m.as_str()),
        ),
        None => (None, None, None, None),
    }
}

/// Columns: product_code, scheme, name, common_name, form, strength, pack_type, pack_size, owner, withdrawn, version.
pub fn product(r: &Row<'_>) -> StoreResult<ProductRecord> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    Ok(ProductRecord {
        product_code: product_code(&s(1)?, &s(0)?)?,
        name: s(2)?,
        common_name: s(3)?,
        form: s(4)?,
        strength: s(5)?,
        pack_type: s(6)?,
        pack_size: s(7)?,
        owner: s(8)?,
        withdrawn: r.get(9).map_err(sql_err)?,
        version: r.get(10).map_err(sql_err)?,
    })
}

/// Columns: batch, expiry, expiry_year, recalled, markets (the product code is known to the caller).
pub fn batch_record(pc: &ProductCode, r: &Row<'_>) -> StoreResult<BatchRecord> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    Ok(BatchRecord {
        product_code: pc.clone(),
        batch: batch(&s(0)?)?,
        expiry: expiry(&s(1)?, r.get(2).map_err(sql_err)?)?,
        recalled: r.get(3).map_err(sql_err)?,
        markets: markets(&s(4)?)?,
    })
}

pub const ALERT_COLUMNS: &str = "id, code, return_code, market, product_code, serial, batch, location, client_id, \
                                 created_at, status, classification, comment, source_key";

pub fn alert(r: &Row<'_>) -> StoreResult<AlertRecord> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    let code = s(1)?;
    let rc = s(2)?;
    let status = s(10)?;
    let classification: Option<String> = r.get(11).map_err(sql_err)?;
    Ok(AlertRecord {
        id: s(0)?,
        code: AlertCode::parse(&code).ok_or_else(|| corrupt(format!("alert code '{code}'")))?,
        return_code: ReturnCode::parse(&rc).ok_or_else(|| corrupt(format!("return code '{rc}'")))?,
        market: market(&s(3)?)?,
        product_code: s(4)?,
        serial: s(5)?,
        batch: s(6)?,
        location: s(7)?,
        client_id: s(8)?,
        created_at: Timestamp::from_unix_millis(r.get(9).map_err(sql_err)?),
        status: AlertStatus::parse(&status).ok_or_else(|| corrupt(format!("alert status '{status}'")))?,
        classification: classification
            .map(|c| Classification::parse(&c).ok_or_else(|| corrupt(format!("classification '{c}'"))))
            .transpose()?,
        comment: r.get(12).map_err(sql_err)?,
        source_key: s(13)?,
    })
}

pub const AUDIT_COLUMNS: &str = "pos, market, seq, at, actor, role, location, operation, subject, return_code, request, result, prev_hash, hash";

pub fn hash(v: Vec<u8>) -> StoreResult<[u8; 32]> {
    v.try_into().map_err(|_| corrupt("hash is not 32 bytes"))
}

pub fn audit(r: &Row<'_>) -> StoreResult<(u64, Sealed)> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    let pos: i64 = r.get(0).map_err(sql_err)?;
    let seq: i64 = r.get(2).map_err(sql_err)?;
    let sealed = Sealed {
        seq: u64::try_from(seq).map_err(|_| corrupt("audit seq"))?,
        entry: Entry {
            market: s(1)?,
            at_millis: r.get(3).map_err(sql_err)?,
            actor: s(4)?,
            role: s(5)?,
            location: s(6)?,
            operation: s(7)?,
            subject: s(8)?,
            return_code: s(9)?,
            request: s(10)?,
            result: s(11)?,
        },
        prev_hash: hash(r.get(12).map_err(sql_err)?)?,
        hash: hash(r.get(13).map_err(sql_err)?)?,
    };
    Ok((u64::try_from(pos).map_err(|_| corrupt("audit position"))?, sealed))
}

pub fn checkpoint(r: &Row<'_>) -> StoreResult<Checkpoint> {
    let sig: Vec<u8> = r.get(5).map_err(sql_err)?;
    let seq: i64 = r.get(1).map_err(sql_err)?;
    Ok(Checkpoint {
        market: r.get(0).map_err(sql_err)?,
        seq: u64::try_from(seq).map_err(|_| corrupt("checkpoint seq"))?,
        hash: hash(r.get(2).map_err(sql_err)?)?,
        at_millis: r.get(3).map_err(sql_err)?,
        key_id: r.get(4).map_err(sql_err)?,
        signature: sig.try_into().map_err(|_| corrupt("signature is not 64 bytes"))?,
    })
}

pub const OUTBOX_COLUMNS: &str = "seq, message_id, destination, kind, ordering_key, payload, created_at, attempts, \
                                  next_attempt_at, last_error, dead";

pub fn outbox(r: &Row<'_>) -> StoreResult<StoredOutboxMessage> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    let seq: i64 = r.get(0).map_err(sql_err)?;
    Ok(StoredOutboxMessage {
        seq: u64::try_from(seq).map_err(|_| corrupt("outbox seq"))?,
        message: OutboxMessage {
            message_id: s(1)?,
            destination: s(2)?,
            kind: s(3)?,
            ordering_key: s(4)?,
            payload: s(5)?,
        },
        created_at: Timestamp::from_unix_millis(r.get(6).map_err(sql_err)?),
        attempts: r.get(7).map_err(sql_err)?,
        next_attempt_at: Timestamp::from_unix_millis(r.get(8).map_err(sql_err)?),
        last_error: r.get(9).map_err(sql_err)?,
        dead: r.get(10).map_err(sql_err)?,
    })
}

pub fn bulk(r: &Row<'_>) -> StoreResult<BulkJob> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    let status = s(2)?;
    let n = |i| -> StoreResult<u64> {
        let v: i64 = r.get(i).map_err(sql_err)?;
        u64::try_from(v).map_err(|_| corrupt("bulk row count"))
    };
    Ok(BulkJob {
        id: s(0)?,
        client_id: s(1)?,
        status: BulkStatus::parse(&status).ok_or_else(|| corrupt(format!("bulk status '{status}'")))?,
        request: s(3)?,
        done_rows: n(4)?,
        total_rows: n(5)?,
        created_at: Timestamp::from_unix_millis(r.get(6).map_err(sql_err)?),
    })
}

pub fn client(r: &Row<'_>) -> StoreResult<ClientRecord> {
    let s = |i| r.get::<_, String>(i).map_err(sql_err);
    let role = s(2)?;
    Ok(ClientRecord {
        client_id: s(0)?,
        secret_hash: s(1)?,
        role: Role::parse(&role).ok_or_else(|| corrupt(format!("role '{role}'")))?,
        market: market(&s(3)?)?,
        location: Location::new(&s(4)?).map_err(|e| corrupt(format!("location: {e}")))?,
        name: s(5)?,
        created_at: Timestamp::from_unix_millis(r.get(6).map_err(sql_err)?),
        disabled: r.get(7).map_err(sql_err)?,
    })
}

pub fn key(r: &Row<'_>) -> StoreResult<KeyRecord> {
    let secret: Vec<u8> = r.get(1).map_err(sql_err)?;
    Ok(KeyRecord {
        kid: r.get(0).map_err(sql_err)?,
        secret: secret.try_into().map_err(|_| corrupt("signing key is not 32 bytes"))?,
        created_at: Timestamp::from_unix_millis(r.get(2).map_err(sql_err)?),
        active: r.get(3).map_err(sql_err)?,
        retired_at: r.get::<_, Option<i64>>(4).map_err(sql_err)?.map(Timestamp::from_unix_millis),
    })
}
