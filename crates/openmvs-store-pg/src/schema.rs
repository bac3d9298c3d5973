//! The PostgreSQL schema of a national system as numbered migrations, applied in order by
//! `openmvs migrate` (or at open when asked) and recorded in `schema_migrations`.
//!
//! Every table that a request touches on its hot path is keyed by product code first (`products`,
//! `batches`, `packs`), so that a distributed PostgreSQL can shard them by product code and keep
//! each pack's reads and writes on one shard; see ARCHITECTURE.md.

use openmvs_store::rolling::Compat;
use tokio_postgres::Client;

use crate::migrations::Migrations;

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
    withdrawn BOOLEAN NOT NULL,
    version BIGINT NOT NULL
);

CREATE TABLE batches (
    product_code TEXT NOT NULL,
    batch TEXT NOT NULL,
    expiry TEXT NOT NULL,
    expiry_year INTEGER NOT NULL,
    recalled BOOLEAN NOT NULL,
    markets TEXT NOT NULL,
    PRIMARY KEY (product_code, batch)
);

CREATE TABLE packs (
    product_code TEXT NOT NULL,
    serial TEXT NOT NULL,
    batch TEXT NOT NULL,
    state TEXT NOT NULL,
    last_command TEXT,
    last_location TEXT,
    last_at BIGINT,
    synced_from TEXT,
    repeats SMALLINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (product_code, serial)
);

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
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    classification TEXT,
    comment TEXT,
    source_key TEXT NOT NULL UNIQUE
);
CREATE INDEX alerts_by_client ON alerts (client_id, id);
CREATE INDEX alerts_by_status ON alerts (status, id);

-- One row: the last global position of the trail. Its row lock is what serialises the sealing of
-- audit records across nodes, so positions and each market's chain follow commit order.
CREATE TABLE audit_state (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    pos BIGINT NOT NULL
);
INSERT INTO audit_state (id, pos) VALUES (1, 0);

-- Each market's chain head and its last signed checkpoint.
CREATE TABLE audit_heads (
    market TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    signed_seq BIGINT NOT NULL,
    signed_at BIGINT NOT NULL
);

CREATE TABLE audit (
    pos BIGINT PRIMARY KEY,
    market TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    location TEXT NOT NULL,
    operation TEXT NOT NULL,
    subject TEXT NOT NULL,
    return_code TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    UNIQUE (market, seq)
);
CREATE INDEX audit_by_subject ON audit (subject, pos);
-- The audit trail is append-only: no interface may change or remove a record.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only';
END;
$$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE TABLE audit_checkpoints (
    market TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    at BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (market, seq)
);

CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    dead BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX outbox_by_key ON outbox (ordering_key, seq) WHERE NOT dead;
CREATE INDEX outbox_due ON outbox (next_attempt_at, seq) WHERE NOT dead;

CREATE TABLE inbox (
    message_id TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);

CREATE TABLE idempotency (
    client_id TEXT NOT NULL,
    client_trx_id TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, client_trx_id)
);

CREATE TABLE bulk_jobs (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    done_rows BIGINT NOT NULL,
    total_rows BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    owner TEXT,
    lease_until BIGINT
);
CREATE INDEX bulk_unfinished ON bulk_jobs (created_at, id) WHERE status <> 'DONE';

CREATE TABLE bulk_results (
    bulk_id TEXT NOT NULL,
    row_no BIGINT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (bulk_id, row_no)
);

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    market TEXT NOT NULL,
    location TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled BOOLEAN NOT NULL
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    secret BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    active BOOLEAN NOT NULL,
    retired_at BIGINT
);
"#,
    ),
    (
        2,
        r#"
-- When each client was last seen; the clients cut off, read by every node every second or so.
ALTER TABLE clients ADD COLUMN last_used_at BIGINT;
CREATE INDEX clients_disabled ON clients (client_id) WHERE disabled;
-- A revoked key verifies nothing from then on.
ALTER TABLE signing_keys ADD COLUMN revoked_at BIGINT;
-- Each node's last probe write, which proves that the store can commit.
CREATE TABLE heartbeats (
    node_id TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
"#,
    ),
    (
        3,
        r#"
-- One alert, one id, shared with the hub and the other market of an inter-market alert: the
-- market holding the pack (NULL: this one), the thread of status changes and comments, and a
-- version that every update expects.
ALTER TABLE alerts ADD COLUMN pack_market TEXT;
ALTER TABLE alerts ADD COLUMN thread TEXT NOT NULL DEFAULT '{}';
ALTER TABLE alerts ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
"#,
    ),
    (4, crate::console::SCHEMA),
    (
        5,
        r#"
-- Expand and contract (openmvs_store::rolling): the oldest build each migration leaves working,
-- and the build each node says it runs in its heartbeat.
ALTER TABLE schema_migrations ADD COLUMN compatible_from BIGINT;
ALTER TABLE heartbeats ADD COLUMN build_schema BIGINT;
"#,
    ),
];

/// What each migration after the strict era leaves working; see [`openmvs_store::rolling`].
pub(crate) const COMPAT: &[Compat] = &[Compat {
    version: 5,
    runs_builds_from: 4,
    what: "adds nullable columns to schema_migrations and heartbeats",
}];

/// The national schema's migrations.
pub(crate) const NATIONAL_MIGRATIONS: Migrations =
    Migrations { table: "schema_migrations", list: MIGRATIONS, compat: COMPAT, what: "the database" };

/// The newest schema version this build knows.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Serialises migrations of one schema across nodes started together.
const MIGRATION_LOCK: i64 = 0x6f70_656e_6d76_7301;

/// The schema version of the connected schema (0 when it has none).
pub async fn current(c: &Client) -> Result<i64, tokio_postgres::Error> {
    crate::migrations::current(c, "schema_migrations").await
}

/// Applies every migration not yet applied, under an advisory lock so that two nodes migrating
/// at once apply each migration once. Refuses a schema newer than this build. Returns the
/// versions applied.
pub async fn migrate(c: &Client, now_millis: i64) -> Result<Result<Vec<i64>, String>, tokio_postgres::Error> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = apply(c, now_millis).await;
    c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    result
}

async fn apply(c: &Client, now_millis: i64) -> Result<Result<Vec<i64>, String>, tokio_postgres::Error> {
    crate::migrations::apply(c, &NATIONAL_MIGRATIONS, now_millis).await
}
