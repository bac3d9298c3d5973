//! The hub's SQLite schema as numbered migrations, applied in order and recorded in
//! `hub_schema_migrations`.
//!
//! The migrations table has a name of its own so that a national database is never taken for a
//! hub database or the other way round: opening the wrong file fails on the first migration
//! (its tables exist already) instead of mixing two schemas in one file.
//!
//! No column holds a serial number (DR Art 33(1)) except `outbox.payload`, whose row is deleted
//! when its destination acknowledges it, and `upload_rejections.serial`, which echoes a rejected
//! line back to the OBP that sent it.

use rusqlite::Connection;

/// Each migration is applied once, in its own transaction, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE obps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    callback_url TEXT
) WITHOUT ROWID;

CREATE TABLE products (
    product_code TEXT PRIMARY KEY,
    scheme TEXT NOT NULL,
    owner TEXT NOT NULL,
    current_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The common part of the master data in columns; the per-market part (national code, MAH,
-- wholesalers) as a JSON array in the order sent.
CREATE TABLE product_versions (
    product_code TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    common_name TEXT NOT NULL,
    form TEXT NOT NULL,
    strength TEXT NOT NULL,
    pack_type TEXT NOT NULL,
    pack_size TEXT NOT NULL,
    market_data TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (product_code, version)
) WITHOUT ROWID;
-- A version is immutable: a change makes a new one.
CREATE TRIGGER product_versions_no_update BEFORE UPDATE ON product_versions
    BEGIN SELECT RAISE(ABORT, 'product versions are immutable'); END;
CREATE TRIGGER product_versions_no_delete BEFORE DELETE ON product_versions
    BEGIN SELECT RAISE(ABORT, 'product versions are immutable'); END;

CREATE TABLE product_withdrawals (
    product_code TEXT NOT NULL,
    market TEXT NOT NULL,
    PRIMARY KEY (product_code, market)
) WITHOUT ROWID;
-- Withdrawal is irreversible per market.
CREATE TRIGGER product_withdrawals_no_update BEFORE UPDATE ON product_withdrawals
    BEGIN SELECT RAISE(ABORT, 'withdrawals are irreversible'); END;
CREATE TRIGGER product_withdrawals_no_delete BEFORE DELETE ON product_withdrawals
    BEGIN SELECT RAISE(ABORT, 'withdrawals are irreversible'); END;

CREATE TABLE batches (
    product_code TEXT NOT NULL,
    batch TEXT NOT NULL,
    product_version INTEGER NOT NULL,
    expiry TEXT NOT NULL,
    expiry_year INTEGER NOT NULL,
    markets TEXT NOT NULL,
    PRIMARY KEY (product_code, batch)
) WITHOUT ROWID;

CREATE TABLE batch_recalls (
    product_code TEXT NOT NULL,
    batch TEXT NOT NULL,
    market TEXT NOT NULL,
    PRIMARY KEY (product_code, batch, market)
) WITHOUT ROWID;
-- Recall is irreversible per market.
CREATE TRIGGER batch_recalls_no_update BEFORE UPDATE ON batch_recalls
    BEGIN SELECT RAISE(ABORT, 'recalls are irreversible'); END;
CREATE TRIGGER batch_recalls_no_delete BEFORE DELETE ON batch_recalls
    BEGIN SELECT RAISE(ABORT, 'recalls are irreversible'); END;

-- Keyed digests of serials, never the serials: enough to refuse a repeat.
CREATE TABLE serial_digests (
    product_code TEXT NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (product_code, digest)
) WITHOUT ROWID;

CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    obp TEXT NOT NULL,
    scheme TEXT NOT NULL,
    product_code TEXT NOT NULL,
    batch TEXT NOT NULL,
    status TEXT NOT NULL,
    received INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX uploads_by_status ON uploads (status, created_at, id);

CREATE TABLE upload_markets (
    upload_id TEXT NOT NULL,
    market TEXT NOT NULL,
    sent INTEGER NOT NULL,
    acked INTEGER NOT NULL,
    PRIMARY KEY (upload_id, market)
) WITHOUT ROWID;

CREATE TABLE upload_rejections (
    upload_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    serial TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (upload_id, line)
) WITHOUT ROWID;

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    obp TEXT NOT NULL,
    market TEXT NOT NULL,
    source_alert_id TEXT NOT NULL,
    product_code TEXT NOT NULL,
    alert TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    classification TEXT,
    comment TEXT,
    UNIQUE (market, source_alert_id)
);
CREATE INDEX alerts_by_obp ON alerts (obp, id);
CREATE INDEX alerts_by_status ON alerts (status, id);

CREATE TABLE audit (
    pos INTEGER PRIMARY KEY,
    market TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    location TEXT NOT NULL,
    operation TEXT NOT NULL,
    subject TEXT NOT NULL,
    return_code TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    UNIQUE (market, seq)
);
CREATE INDEX audit_by_subject ON audit (subject, pos);
-- The audit trail is append-only: no interface may change or remove a record.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;

CREATE TABLE audit_checkpoints (
    market TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    at INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (market, seq)
);

-- A serial chunk is linked to its upload: delivering it counts the market's acknowledgement.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    dead INTEGER NOT NULL DEFAULT 0,
    upload_id TEXT
);
CREATE INDEX outbox_by_key ON outbox (destination, ordering_key, seq);
CREATE INDEX outbox_due ON outbox (destination, dead, next_attempt_at, seq);

CREATE TABLE inbox (
    message_id TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    ),
    (
        2,
        r#"
-- Each node's last probe write, which proves that the store can commit.
CREATE TABLE heartbeats (
    node_id TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
"#,
    ),
    (
        3,
        r#"
-- One alert, one id: the hub keeps an alert under the id its market gave it (source_alert_id is
-- that id too), with the thread of status changes and comments and a version every update expects.
ALTER TABLE alerts ADD COLUMN thread TEXT NOT NULL DEFAULT '{}';
ALTER TABLE alerts ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
"#,
    ),
    (4, crate::console::SCHEMA),
];

/// The newest schema version this build knows.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The version a database has (0 for none).
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(version), 0) FROM hub_schema_migrations", [], |r| r.get(0))
}

/// Applies every migration not yet applied. Refuses a database newer than this build.
pub fn migrate(conn: &mut Connection, now_millis: i64) -> rusqlite::Result<Result<(), String>> {
    // Checked before anything is created, so that the wrong file is left exactly as it was.
    let national: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if national {
        return Ok(Err("this is a national system's database, not the hub's".into()));
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS hub_schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let current = version(conn)?;
    if current > LATEST {
        return Ok(Err(format!(
            "the hub database has schema version {current}, newer than this build's {LATEST}: upgrade openmvs"
        )));
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO hub_schema_migrations (version, applied_at) VALUES (?1, ?2)",
            (version, now_millis),
        )?;
        tx.commit()?;
    }
    Ok(Ok(()))
}
