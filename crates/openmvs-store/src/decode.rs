//! Decoding stored rows into records, for every engine: an engine exposes a row as [`Columns`] and
//! these functions rebuild the records through the core's validating constructors, so a corrupt
//! row is reported as corrupt instead of being trusted, whichever database it came from.

use openmvs_audit::{Checkpoint, Entry, Sealed};
use openmvs_core::alert::{AlertChange, AlertComment, AlertStatus, AlertThread, Classification};
use openmvs_core::ids::{Batch, Expiry, Location, MarketCode, ProductCode, Scheme, Serial};
use openmvs_core::pack::{Change, Command, Pack, PackState};
use openmvs_core::return_code::{AlertCode, ReturnCode};
use openmvs_core::roles::Role;
use openmvs_core::time::{Date, Timestamp};

use crate::*;

/// One stored row, read column by column (by position).
pub trait Columns {
    /// A text column that must not be NULL.
    fn text(&self, i: usize) -> StoreResult<String>;
    /// A text column that may be NULL.
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>>;
    /// An integer column that must not be NULL.
    fn int(&self, i: usize) -> StoreResult<i64>;
    /// An integer column that may be NULL.
    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>>;
    /// A boolean column.
    fn boolean(&self, i: usize) -> StoreResult<bool>;
    /// A byte-string column.
    fn bytes(&self, i: usize) -> StoreResult<Vec<u8>>;
}

/// A corrupt-data error.
pub fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn unsigned(v: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("{what} {v}")))
}

fn at(r: &impl Columns, i: usize) -> StoreResult<Timestamp> {
    Ok(Timestamp::from_unix_millis(r.int(i)?))
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

/// A stored batch number.
pub fn batch(s: &str) -> StoreResult<Batch> {
    Batch::new(s).map_err(|e| corrupt(format!("batch '{s}': {e}")))
}

/// A stored serial number.
pub fn serial(s: &str) -> StoreResult<Serial> {
    Serial::new(s).map_err(|e| corrupt(format!("serial '{s}': {e}")))
}

/// A stored location.
pub fn location(s: &str) -> StoreResult<Location> {
    Location::new(s).map_err(|e| corrupt(format!("location: {e}")))
}

/// A stored product code with its scheme.
pub fn product_code(scheme: &str, code: &str) -> StoreResult<ProductCode> {
    let scheme = Scheme::parse(scheme).map_err(|e| corrupt(format!("scheme: {e}")))?;
    ProductCode::new(scheme, code).map_err(|e| corrupt(format!("product code '{code}': {e}")))
}

/// A stored market code.
pub fn market(s: &str) -> StoreResult<MarketCode> {
    MarketCode::new(s).map_err(|e| corrupt(format!("market: {e}")))
}

/// A market list as stored: comma-separated.
pub fn markets_to_text(m: &[MarketCode]) -> String {
    m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
}

/// A stored market list.
pub fn markets(s: &str) -> StoreResult<Vec<MarketCode>> {
    s.split(',').filter(|p| !p.is_empty()).map(market).collect()
}

/// A stored SHA-256 hash.
pub fn hash(v: Vec<u8>) -> StoreResult<[u8; 32]> {
    v.try_into().map_err(|_| corrupt("hash is not 32 bytes"))
}

/// The columns of a pack's last change, for binding: command, location, at, synced from.
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

/// The columns of a pack, in the order [`stored_pack`] reads them.
pub const PACK_COLUMNS: &str =
    "batch, state, last_command, last_location, last_at, synced_from, repeats, version";

/// A pack, from [`PACK_COLUMNS`] starting at column `o`.
pub fn stored_pack(r: &impl Columns, o: usize) -> StoreResult<StoredPack> {
    let state = r.text(o + 1)?;
    let state = PackState::parse(&state).ok_or_else(|| corrupt(format!("pack state '{state}'")))?;
    let last_change = match (r.opt_text(o + 2)?, r.opt_text(o + 3)?, r.opt_int(o + 4)?) {
        (Some(cmd), Some(loc), Some(at)) => Some(Change {
            command: Command::parse(&cmd).ok_or_else(|| corrupt(format!("command '{cmd}'")))?,
            location: location(&loc)?,
            at: Timestamp::from_unix_millis(at),
            synced_from: r.opt_text(o + 5)?.as_deref().map(market).transpose()?,
        }),
        _ => None,
    };
    let repeats = r.int(o + 6)?;
    Ok(StoredPack {
        pack: Pack {
            batch: batch(&r.text(o)?)?,
            state,
            last_change,
            repeats: u8::try_from(repeats).map_err(|_| corrupt("repeats"))?,
        },
        version: unsigned(r.int(o + 7)?, "version")?,
    })
}

/// The columns of a product, in the order [`product`] reads them.
pub const PRODUCT_COLUMNS: &str = "product_code, scheme, name, common_name, form, strength, pack_type, pack_size, owner, withdrawn, version";

/// A product, from [`PRODUCT_COLUMNS`] starting at column `o`.
pub fn product(r: &impl Columns, o: usize) -> StoreResult<ProductRecord> {
    let s = |i| r.text(o + i);
    Ok(ProductRecord {
        product_code: product_code(&s(1)?, &s(0)?)?,
        name: s(2)?,
        common_name: s(3)?,
        form: s(4)?,
        strength: s(5)?,
        pack_type: s(6)?,
        pack_size: s(7)?,
        owner: s(8)?.into(),
        withdrawn: r.boolean(o + 9)?,
        version: u32::try_from(r.int(o + 10)?).map_err(|_| corrupt("product version"))?,
    })
}

/// The columns of a batch, in the order [`batch_record`] reads them.
pub const BATCH_COLUMNS: &str = "batch, expiry, expiry_year, recalled, markets";

/// A batch, from [`BATCH_COLUMNS`] starting at column `o` (the product code is the caller's).
pub fn batch_record(pc: &ProductCode, r: &impl Columns, o: usize) -> StoreResult<BatchRecord> {
    let year = i32::try_from(r.int(o + 2)?).map_err(|_| corrupt("expiry year"))?;
    Ok(BatchRecord {
        product_code: pc.clone(),
        batch: batch(&r.text(o)?)?,
        expiry: expiry(&r.text(o + 1)?, year)?,
        recalled: r.boolean(o + 3)?,
        markets: markets(&r.text(o + 4)?)?,
    })
}

/// The columns of an alert, in the order [`alert`] reads them.
pub const ALERT_COLUMNS: &str = "id, code, return_code, market, product_code, serial, batch, location, client_id, \
                                 created_at, status, classification, comment, source_key, pack_market, thread, version";

/// An alert, from [`ALERT_COLUMNS`].
pub fn alert(r: &impl Columns) -> StoreResult<AlertRecord> {
    let s = |i| r.text(i);
    let code = s(1)?;
    let rc = s(2)?;
    let status = s(10)?;
    Ok(AlertRecord {
        id: s(0)?.into(),
        code: AlertCode::parse(&code).ok_or_else(|| corrupt(format!("alert code '{code}'")))?,
        return_code: ReturnCode::parse(&rc).ok_or_else(|| corrupt(format!("return code '{rc}'")))?,
        market: market(&s(3)?)?,
        product_code: s(4)?,
        serial: serial(&s(5)?)?,
        batch: s(6)?,
        location: location(&s(7)?)?,
        client_id: s(8)?.into(),
        created_at: at(r, 9)?,
        status: AlertStatus::parse(&status).ok_or_else(|| corrupt(format!("alert status '{status}'")))?,
        classification: r
            .opt_text(11)?
            .map(|c| Classification::parse(&c).ok_or_else(|| corrupt(format!("classification '{c}'"))))
            .transpose()?,
        comment: r.opt_text(12)?,
        source_key: s(13)?,
        // Alerts stored before inter-market alerts were shared have no pack market: their own.
        pack_market: match r.opt_text(14)? {
            Some(m) => market(&m)?,
            None => market(&s(3)?)?,
        },
        thread: thread(&s(15)?)?,
        version: unsigned(r.int(16)?, "alert version")?,
    })
}

fn status_of(s: &str) -> StoreResult<AlertStatus> {
    AlertStatus::parse(s).ok_or_else(|| corrupt(format!("alert status '{s}'")))
}

/// An alert's thread for storing, as JSON: `{"history": [...], "comments": [...]}`.
pub fn thread_text(t: &AlertThread) -> String {
    let history: Vec<serde_json::Value> = t
        .history
        .iter()
        .map(|c| {
            serde_json::json!({"id": c.id, "from": c.from.as_str(), "to": c.to.as_str(),
                "classification": c.classification.map(Classification::as_str), "by": c.by,
                "role": c.role, "at": c.at.unix_millis()})
        })
        .collect();
    let comments: Vec<serde_json::Value> = t
        .comments
        .iter()
        .map(|c| {
            serde_json::json!({"id": c.id, "author": c.author, "role": c.role,
                "at": c.at.unix_millis(), "text": c.text})
        })
        .collect();
    serde_json::json!({"history": history, "comments": comments}).to_string()
}

/// A stored thread, from [`thread_text`].
pub fn thread(text: &str) -> StoreResult<AlertThread> {
    let bad = |why: &str| corrupt(format!("alert thread: {why}"));
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
    let str_of = |x: &serde_json::Value, k: &str| -> StoreResult<String> {
        x[k].as_str().map(str::to_owned).ok_or_else(|| bad(&format!("{k} is not text")))
    };
    let at_of = |x: &serde_json::Value| -> StoreResult<Timestamp> {
        x["at"].as_i64().map(Timestamp::from_unix_millis).ok_or_else(|| bad("at is not a number"))
    };
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let mut t = AlertThread::default();
    for c in list("history") {
        t.history.push(AlertChange {
            id: str_of(&c, "id")?,
            from: status_of(&str_of(&c, "from")?)?,
            to: status_of(&str_of(&c, "to")?)?,
            classification: match c["classification"].as_str() {
                Some(k) => {
                    Some(Classification::parse(k).ok_or_else(|| corrupt(format!("classification '{k}'")))?)
                }
                None => None,
            },
            by: str_of(&c, "by")?,
            role: str_of(&c, "role")?,
            at: at_of(&c)?,
        });
    }
    for c in list("comments") {
        t.comments.push(AlertComment {
            id: str_of(&c, "id")?,
            author: str_of(&c, "author")?,
            role: str_of(&c, "role")?,
            at: at_of(&c)?,
            text: str_of(&c, "text")?,
        });
    }
    Ok(t)
}

/// The columns of an audit record, in the order [`audit`] reads them.
pub const AUDIT_COLUMNS: &str = "pos, market, seq, at, actor, role, location, operation, subject, return_code, request, result, prev_hash, hash";

/// An audit record with its global position, from [`AUDIT_COLUMNS`].
pub fn audit(r: &impl Columns) -> StoreResult<(u64, Sealed)> {
    let s = |i| r.text(i);
    let sealed = Sealed {
        seq: unsigned(r.int(2)?, "audit seq")?,
        entry: Entry {
            market: s(1)?,
            at_millis: r.int(3)?,
            actor: s(4)?,
            role: s(5)?,
            location: s(6)?,
            operation: s(7)?,
            subject: s(8)?,
            return_code: s(9)?,
            request: s(10)?,
            result: s(11)?,
        },
        prev_hash: hash(r.bytes(12)?)?,
        hash: hash(r.bytes(13)?)?,
    };
    Ok((unsigned(r.int(0)?, "audit position")?, sealed))
}

/// The columns of a checkpoint, in the order [`checkpoint`] reads them.
pub const CHECKPOINT_COLUMNS: &str = "market, seq, hash, at, key_id, signature";

/// A signed checkpoint, from [`CHECKPOINT_COLUMNS`].
pub fn checkpoint(r: &impl Columns) -> StoreResult<Checkpoint> {
    Ok(Checkpoint {
        market: r.text(0)?,
        seq: unsigned(r.int(1)?, "checkpoint seq")?,
        hash: hash(r.bytes(2)?)?,
        at_millis: r.int(3)?,
        key_id: r.text(4)?,
        signature: r.bytes(5)?.try_into().map_err(|_| corrupt("signature is not 64 bytes"))?,
    })
}

/// The columns of an outbox message, in the order [`outbox`] reads them.
pub const OUTBOX_COLUMNS: &str = "seq, message_id, destination, kind, ordering_key, payload, created_at, attempts, \
                                  next_attempt_at, last_error, dead";

/// An outbox message, from [`OUTBOX_COLUMNS`].
pub fn outbox(r: &impl Columns) -> StoreResult<StoredOutboxMessage> {
    let s = |i| r.text(i);
    Ok(StoredOutboxMessage {
        seq: unsigned(r.int(0)?, "outbox seq")?,
        message: OutboxMessage {
            message_id: s(1)?.into(),
            destination: s(2)?,
            kind: s(3)?,
            ordering_key: s(4)?,
            payload: s(5)?,
        },
        created_at: at(r, 6)?,
        attempts: u32::try_from(r.int(7)?).map_err(|_| corrupt("outbox attempts"))?,
        next_attempt_at: at(r, 8)?,
        last_error: r.opt_text(9)?,
        dead: r.boolean(10)?,
    })
}

/// Per destination: the destination, the live messages, those whose last attempt failed, the
/// dead letters, and when the oldest live message was committed; rows read by [`queue_counts`]. The same SQL on every engine (`dead` is a
/// boolean in PostgreSQL and 0 or 1 in SQLite, and both read it as a condition).
pub const QUEUE_COUNTS: &str = "SELECT destination, \
     SUM(CASE WHEN dead THEN 0 ELSE 1 END), \
     SUM(CASE WHEN dead THEN 0 WHEN attempts > 0 THEN 1 ELSE 0 END), \
     SUM(CASE WHEN dead THEN 1 ELSE 0 END), \
     MIN(CASE WHEN dead THEN NULL ELSE created_at END) \
     FROM outbox GROUP BY destination ORDER BY destination";

/// One row of [`QUEUE_COUNTS`].
pub fn queue_counts(r: &impl Columns) -> StoreResult<QueueCounts> {
    Ok(QueueCounts {
        destination: r.text(0)?,
        pending: unsigned(r.int(1)?, "outbox count")?,
        failing: unsigned(r.int(2)?, "outbox count")?,
        dead: unsigned(r.int(3)?, "outbox count")?,
        oldest_at: r.opt_int(4)?.map(Timestamp::from_unix_millis),
    })
}

/// The statuses of an alert that is not closed, in lifecycle order: what
/// [`OPEN_ALERT_COUNTS`] counts.
pub const OPEN_ALERT_STATUSES: [AlertStatus; 3] =
    [AlertStatus::Open, AlertStatus::Investigating, AlertStatus::Escalated];

/// The alerts not closed, per status, over an engine's `alerts` table (the national system's or
/// the hub's): rows of status and count, read by [`open_alert_counts`]. Named statuses, so that
/// each is a range of the status index, never a scan of the closed alerts.
pub const OPEN_ALERT_COUNTS: &str = "SELECT status, COUNT(*) FROM alerts \
     WHERE status IN ('OPEN', 'INVESTIGATING', 'ESCALATED') GROUP BY status";

/// The rows of [`OPEN_ALERT_COUNTS`] (status, count) as a count for each of
/// [`OPEN_ALERT_STATUSES`], in that order, 0 for a status no row names.
pub fn open_alert_counts(rows: &[(String, i64)]) -> StoreResult<Vec<(AlertStatus, u64)>> {
    let mut out: Vec<(AlertStatus, u64)> = OPEN_ALERT_STATUSES.iter().map(|s| (*s, 0)).collect();
    for (status, n) in rows {
        let slot = out
            .iter_mut()
            .find(|(s, _)| s.as_str() == status)
            .ok_or_else(|| corrupt(format!("alert status '{status}' counted as open")))?;
        slot.1 = unsigned(*n, "alert count")?;
    }
    Ok(out)
}

/// The columns of a bulk job, in the order [`bulk`] reads them.
pub const BULK_COLUMNS: &str = "id, client_id, status, request, done_rows, total_rows, created_at";

/// A bulk job, from [`BULK_COLUMNS`].
pub fn bulk(r: &impl Columns) -> StoreResult<BulkJob> {
    let status = r.text(2)?;
    Ok(BulkJob {
        id: r.text(0)?.into(),
        client_id: r.text(1)?.into(),
        status: BulkStatus::parse(&status).ok_or_else(|| corrupt(format!("bulk status '{status}'")))?,
        request: r.text(3)?,
        done_rows: unsigned(r.int(4)?, "bulk row count")?,
        total_rows: unsigned(r.int(5)?, "bulk row count")?,
        created_at: at(r, 6)?,
    })
}

/// The columns of a client, in the order [`client`] reads them.
pub const CLIENT_COLUMNS: &str =
    "client_id, secret_hash, role, market, location, name, created_at, disabled, last_used_at";

/// A client, from [`CLIENT_COLUMNS`].
pub fn client(r: &impl Columns) -> StoreResult<ClientRecord> {
    let role = r.text(2)?;
    Ok(ClientRecord {
        client_id: r.text(0)?.into(),
        secret_hash: r.text(1)?,
        role: Role::parse(&role).ok_or_else(|| corrupt(format!("role '{role}'")))?,
        market: market(&r.text(3)?)?,
        location: location(&r.text(4)?)?,
        name: r.text(5)?,
        created_at: at(r, 6)?,
        disabled: r.boolean(7)?,
        last_used_at: r.opt_int(8)?.map(Timestamp::from_unix_millis),
    })
}

/// The columns of a token-signing key, in the order [`key`] reads them.
pub const KEY_COLUMNS: &str = "kid, secret, created_at, active, retired_at, revoked_at";

/// A token-signing key, from [`KEY_COLUMNS`].
pub fn key(r: &impl Columns) -> StoreResult<KeyRecord> {
    Ok(KeyRecord {
        kid: r.text(0)?.into(),
        secret: r.bytes(1)?.try_into().map_err(|_| corrupt("signing key is not 32 bytes"))?,
        created_at: at(r, 2)?,
        active: r.boolean(3)?,
        retired_at: r.opt_int(4)?.map(Timestamp::from_unix_millis),
        revoked_at: r.opt_int(5)?.map(Timestamp::from_unix_millis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_alert_count_names_every_status_but_closed() {
        let named: Vec<AlertStatus> = AlertStatus::ALL
            .into_iter()
            .filter(|s| OPEN_ALERT_COUNTS.contains(&format!("'{}'", s.as_str())))
            .collect();
        assert_eq!(named, OPEN_ALERT_STATUSES);
        assert!(!OPEN_ALERT_STATUSES.contains(&AlertStatus::Closed));
        let counts = open_alert_counts(&[("ESCALATED".into(), 2), ("OPEN".into(), 5)]).unwrap();
        assert_eq!(
            counts,
            [(AlertStatus::Open, 5), (AlertStatus::Investigating, 0), (AlertStatus::Escalated, 2)]
        );
        assert!(matches!(open_alert_counts(&[("CLOSED".into(), 1)]), Err(StoreError::Corrupt(_))));
    }
}
