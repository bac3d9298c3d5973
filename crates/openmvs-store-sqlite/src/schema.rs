//! The SQLite schema as numbered migrations, applied in order and recorded in `schema_migrations`.

use rusqlite::Connection;

/// Each migration is applied once, in its own transaction, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE products (
    product_code TEXT PRIMARY KEY,
    scheme TEXT NOT NULL,
    name TEXT NOT NULL, common_name TEXT NOT NULL, form TEXT NOT NULL, strength TEXT NOT NULL,
    pack_type TEXT NOT NULL, pack_size TEXT NOT NULL,
    owner TEXT NOT NULL,
    withdrawn INTEGER NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE batches (
    product_code TEXT NOT NULL,
    batch TEXT NOT NULL,
    expiry TEXT NOT NULL,
    expiry_year INTEGER NOT NULL,
    recalled INTEGER NOT NULL,
    markets TEXT NOT NULL,
    PRIMARY KEY (product_code, batch)
) WITHOUT ROWID;

CREATE TABLE packs (
    product_code TEXT NOT NULL,
    serial TEXT NOT NULL,
    batch TEXT NOT NULL,
    state TEXT NOT NULL,
    last_command TEXT,
    last_location TEXT,
    last_at INTEGER,
    synced_from TEXT,
    repeats INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (product_code, serial)
) WITHOUT ROWID;

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    return_code TEXT NOT NULL,
    market TEXT NOT NULL,
    product_code TEXT NOT NULL,
    serial TEXT NOT NULL,
    batch TEXT NOT NULL,
    location TEXT NOT NULL,
    client_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    classification TEXT,
    comment TEXT,
    source_key TEXT NOT NULL UNIQUE
);
CREATE INDEX alerts_by_client ON alerts (client_id, id);
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
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_by_key ON outbox (ordering_key, seq);
CREATE INDEX outbox_due ON outbox (dead, next_attempt_at, seq);

CREATE TABLE inbox (
    message_id TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE idempotency (
    client_id TEXT NOT NULL,
    client_trx_id TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, client_trx_id)
) WITHOUT ROWID;

CREATE TABLE bulk_jobs (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    done_rows INTEGER NOT NULL,
    total_rows INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX bulk_unfinished ON bulk_jobs (status, created_at);

CREATE TABLE bulk_results (
    bulk_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (bulk_id, row)
) WITHOUT ROWID;

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    market TEXT NOT NULL,
    location TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    disabled INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    secret BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    active INTEGER NOT NULL,
    retired_at INTEGER
);
"#,
    ),
    (
        2,
        r#"
-- A bulk job is leased by one worker at a time; another takes it over when the lease ends.
ALTER TABLE bulk_jobs ADD COLUMN owner TEXT;
ALTER TABLE bulk_jobs ADD COLUMN lease_until INTEGER;
"#,
    ),
    (
        3,
        r#"
-- Stored answers are appended in the order they are given and found through a small index on
-- the client's key. Kept in a table ordered by that key, rows of several hundred bytes landed in
-- the middle of its pages and split them: a verify wrote about two pages of it per commit.
CREATE TABLE idempotency_by_arrival (
    id INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL,
    client_trx_id TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO idempotency_by_arrival (client_id, client_trx_id, request_hash, status, response, created_at)
    SELECT client_id, client_trx_id, request_hash, status, response, created_at
    FROM idempotency ORDER BY created_at;
DROP TABLE idempotency;
ALTER TABLE idempotency_by_arrival RENAME TO idempotency;
CREATE UNIQUE INDEX idempotency_by_key ON idempotency (client_id, client_trx_id);
"#,
    ),
    (
        4,
        r#"
-- When each client was last seen; the clients cut off, read by the node every second or so.
ALTER TABLE clients ADD COLUMN last_used_at INTEGER;
CREATE INDEX clients_disabled ON clients (client_id) WHERE disabled = 1;
-- A revoked key verifies nothing from then on.
ALTER TABLE signing_keys ADD COLUMN revoked_at INTEGER;
-- Each node's last probe write, which proves that the store can commit.
CREATE TABLE heartbeats (
    node_id TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
"#,
    ),
    (
        5,
        r#"
-- One alert, one id, shared with the hub and the other market of an inter-market alert: the
-- market holding the pack (NULL: this one), the thread of status changes and comments, and a
-- version that every update expects.
ALTER TABLE alerts ADD COLUMN pack_market TEXT;
ALTER TABLE alerts ADD COLUMN thread TEXT NOT NULL DEFAULT '{}';
ALTER TABLE alerts ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
"#,
    ),
    (6, crate::console::SCHEMA),
];

/// The newest schema version this build knows.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies every migration not yet applied. Refuses a database newer than this build.
pub fn migrate(conn: &mut Connection, now_millis: i64) -> rusqlite::Result<Result<(), String>> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let current: i64 =
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    if current > LATEST {
        return Ok(Err(format!(
            "the database has schema version {current}, newer than this build's {LATEST}: upgrade openmvs"
        )));
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            (version, now_millis),
        )?;
        tx.commit()?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies the migrations up to `version` only, as an older build would have.
    fn migrate_to(conn: &mut Connection, version: i64) {
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for &(v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= version) {
            conn.execute_batch(sql).unwrap();
            conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)", [v]).unwrap();
        }
    }

    /// Moving the stored answers to a table in arrival order keeps every one of them, still
    /// found by its key, and the key stays unique.
    #[test]
    fn stored_answers_survive_the_move_to_arrival_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 2);
        for (client, trx, at) in [("c1", "t2", 20), ("c1", "t1", 10), ("c2", "t1", 30)] {
            conn.execute(
                "INSERT INTO idempotency (client_id, client_trx_id, request_hash, status, response, created_at) \
                 VALUES (?1, ?2, X'01', 200, ?3, ?4)",
                rusqlite::params![client, trx, format!("answer {client} {trx}"), at],
            )
            .unwrap();
        }
        migrate(&mut conn, 99).unwrap().unwrap();
        let version: i64 =
            conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(version, LATEST);
        let answer = |client: &str, trx: &str| -> String {
            conn.query_row(
                "SELECT response FROM idempotency WHERE client_id = ?1 AND client_trx_id = ?2",
                [client, trx],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(answer("c1", "t1"), "answer c1 t1");
        assert_eq!(answer("c1", "t2"), "answer c1 t2");
        assert_eq!(answer("c2", "t1"), "answer c2 t1");
        let order: Vec<String> = conn
            .prepare("SELECT client_trx_id || '@' || client_id FROM idempotency ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(order, ["t1@c1", "t2@c1", "t1@c2"], "oldest first");
        let again = conn.execute(
            "INSERT INTO idempotency (client_id, client_trx_id, request_hash, status, response, created_at) \
             VALUES ('c1', 't1', X'02', 200, 'other', 40) ON CONFLICT DO NOTHING",
            [],
        );
        assert_eq!(again.unwrap(), 0, "a key is stored once");
    }
}
