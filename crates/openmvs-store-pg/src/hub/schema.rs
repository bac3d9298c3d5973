//! The hub's PostgreSQL schema as numbered migrations, applied in order (by the hub's migrate
//! entry point, or at open when asked) and recorded in `hub_schema_migrations`.
//!
//! The hub lives in a schema of its own (e.g. `openmvs_hub`). Its migrations table has a name of
//! its own so that a national system's schema is never taken for the hub's: migrating one is
//! refused before anything is created in it.
//!
//! The tables every upload and catalog request touches (`products`, `product_versions`,
//! `product_withdrawals`, `batches`, `batch_recalls`, `serial_digests`) are keyed by product code
//! first, so that a distributed PostgreSQL can shard them by product code and keep one product's
//! reads and writes on one shard. The audit tables are those of the national schema, so that the
//! same writer seals and signs both trails. Text keys that are listed in order are compared
//! byte by byte (`COLLATE "C"`), as SQLite does, whatever the database's locale.
//!
//! No column holds a serial number (DR Art 33(1)) except `outbox.payload`, whose row is deleted
//! when its destination acknowledges it, and `upload_rejections.serial`, which echoes a rejected
//! line back to the OBP that sent it.

use openmvs_store::rolling::Compat;
use tokio_postgres::Client;

use crate::migrations::Migrations;

/// Each migration is applied once, in its own transaction, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
-- What may never change once written (product versions, withdrawals, recalls, audit records).
CREATE FUNCTION hub_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END;
$$;

CREATE TABLE obps (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    callback_url TEXT
);

CREATE TABLE products (
    product_code TEXT PRIMARY KEY,
    scheme TEXT NOT NULL,
    owner TEXT NOT NULL,
    current_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The common part of the master data in columns; the per-market part (national code, MAH,
-- wholesalers) as a JSON array in the order sent, kept as text so it reads back byte for byte.
CREATE TABLE product_versions (
    product_code TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    common_name TEXT NOT NULL,
    form TEXT NOT NULL,
    strength TEXT NOT NULL,
    pack_type TEXT NOT NULL,
    pack_size TEXT NOT NULL,
    market_data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (product_code, version)
);
-- A version is immutable: a change makes a new one.
CREATE TRIGGER product_versions_immutable BEFORE UPDATE OR DELETE ON product_versions
    FOR EACH ROW EXECUTE FUNCTION hub_refuse_change('product versions are immutable');
CREATE TRIGGER product_versions_no_truncate BEFORE TRUNCATE ON product_versions
    FOR EACH STATEMENT EXECUTE FUNCTION hub_refuse_change('product versions are immutable');

CREATE TABLE product_withdrawals (
    product_code TEXT NOT NULL,
    market TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (product_code, market)
);
-- Withdrawal is irreversible per market.
CREATE TRIGGER product_withdrawals_irreversible BEFORE UPDATE OR DELETE ON product_withdrawals
    FOR EACH ROW EXECUTE FUNCTION hub_refuse_change('withdrawals are irreversible');
CREATE TRIGGER product_withdrawals_no_truncate BEFORE TRUNCATE ON product_withdrawals
    FOR EACH STATEMENT EXECUTE FUNCTION hub_refuse_change('withdrawals are irreversible');

CREATE TABLE batches (
    product_code TEXT NOT NULL,
    batch TEXT NOT NULL,
    product_version BIGINT NOT NULL,
    expiry TEXT NOT NULL,
    expiry_year INTEGER NOT NULL,
    markets TEXT NOT NULL,
    PRIMARY KEY (product_code, batch)
);

CREATE TABLE batch_recalls (
    product_code TEXT NOT NULL,
    batch TEXT NOT NULL,
    market TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (product_code, batch, market)
);
-- Recall is irreversible per market.
CREATE TRIGGER batch_recalls_irreversible BEFORE UPDATE OR DELETE ON batch_recalls
    FOR EACH ROW EXECUTE FUNCTION hub_refuse_change('recalls are irreversible');
CREATE TRIGGER batch_recalls_no_truncate BEFORE TRUNCATE ON batch_recalls
    FOR EACH STATEMENT EXECUTE FUNCTION hub_refuse_change('recalls are irreversible');

-- Keyed digests of serials, never the serials: enough to refuse a repeat.
CREATE TABLE serial_digests (
    product_code TEXT NOT NULL,
    digest BYTEA NOT NULL,
    PRIMARY KEY (product_code, digest)
);

CREATE TABLE uploads (
    id TEXT COLLATE "C" PRIMARY KEY,
    obp TEXT NOT NULL,
    scheme TEXT NOT NULL,
    product_code TEXT NOT NULL,
    batch TEXT NOT NULL,
    status TEXT NOT NULL,
    received BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX uploads_unfinished ON uploads (created_at, id) WHERE status = 'RECEIVED';

CREATE TABLE upload_markets (
    upload_id TEXT COLLATE "C" NOT NULL,
    market TEXT COLLATE "C" NOT NULL,
    sent BIGINT NOT NULL,
    acked BIGINT NOT NULL,
    PRIMARY KEY (upload_id, market)
);

CREATE TABLE upload_rejections (
    upload_id TEXT COLLATE "C" NOT NULL,
    line BIGINT NOT NULL,
    serial TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (upload_id, line)
);

CREATE TABLE alerts (
    id TEXT COLLATE "C" PRIMARY KEY,
    obp TEXT NOT NULL,
    market TEXT NOT NULL,
    source_alert_id TEXT NOT NULL,
    product_code TEXT NOT NULL,
    alert TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    classification TEXT,
    comment TEXT,
    UNIQUE (market, source_alert_id)
);
CREATE INDEX alerts_by_obp ON alerts (obp, id);
CREATE INDEX alerts_by_status ON alerts (status, id);

-- One row: the last global position of the trail. Its row lock is what serialises the sealing of
-- audit records across nodes, so positions and the chain follow commit order.
CREATE TABLE audit_state (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    pos BIGINT NOT NULL
);
INSERT INTO audit_state (id, pos) VALUES (1, 0);

-- The chain head and its last signed checkpoint (one chain, HUB).
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
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION hub_refuse_change('audit records are append-only');
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION hub_refuse_change('audit records are append-only');

CREATE TABLE audit_checkpoints (
    market TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    at BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (market, seq)
);

-- One queue per destination. A serial chunk is linked to its upload: delivering it counts the
-- market's acknowledgement.
CREATE TABLE outbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    destination TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    dead BOOLEAN NOT NULL DEFAULT FALSE,
    upload_id TEXT COLLATE "C"
);
CREATE INDEX outbox_by_key ON outbox (destination, ordering_key, seq) WHERE NOT dead;
CREATE INDEX outbox_due ON outbox (destination, next_attempt_at, seq) WHERE NOT dead;

CREATE TABLE inbox (
    message_id TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);

-- Deletes a delivered message, and with it the serials of a chunk, counting the chunk's
-- acknowledgement in the same transaction, so an upload can never be DISTRIBUTED with its serials
-- still here, nor keep them once it is. The upload's row lock orders this with the upload's
-- progress and with the acknowledgements of its other chunks, on any node; each statement after it
-- reads afresh (the function is volatile), so whichever of them commits last sees all the others
-- and marks the upload.
CREATE FUNCTION hub_delivered(p_seq BIGINT) RETURNS VOID LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    v_upload TEXT;
    v_market TEXT;
BEGIN
    SELECT upload_id INTO v_upload FROM outbox WHERE seq = p_seq;
    IF v_upload IS NOT NULL THEN
        PERFORM 1 FROM uploads WHERE id = v_upload FOR UPDATE;
    END IF;
    v_upload := NULL;
    DELETE FROM outbox WHERE seq = p_seq RETURNING upload_id, destination INTO v_upload, v_market;
    IF v_upload IS NOT NULL THEN
        UPDATE upload_markets SET acked = acked + 1 WHERE upload_id = v_upload AND market = v_market;
        UPDATE uploads SET status = 'DISTRIBUTED' WHERE id = v_upload AND status = 'VALIDATED'
            AND NOT EXISTS (SELECT 1 FROM upload_markets WHERE upload_id = v_upload AND acked < sent);
    END IF;
END;
$$;
"#,
    ),
    (
        2,
        r#"
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
-- One alert, one id: the hub keeps an alert under the id its market gave it (source_alert_id is
-- that id too), with the thread of status changes and comments and a version every update expects.
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
ALTER TABLE hub_schema_migrations ADD COLUMN compatible_from BIGINT;
ALTER TABLE heartbeats ADD COLUMN build_schema BIGINT;
"#,
    ),
];

/// What each migration after the strict era leaves working; see [`openmvs_store::rolling`].
pub(crate) const COMPAT: &[Compat] = &[Compat {
    version: 5,
    runs_builds_from: 4,
    what: "adds nullable columns to hub_schema_migrations and heartbeats",
}];

/// The hub schema's migrations.
pub(crate) const HUB_MIGRATIONS: Migrations =
    Migrations { table: "hub_schema_migrations", list: MIGRATIONS, compat: COMPAT, what: "the hub database" };

/// The newest schema version this build knows.
pub const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Serialises migrations of the hub's schema across nodes started together.
const MIGRATION_LOCK: i64 = 0x6f70_656e_6d76_7302;

async fn table_exists(c: &Client, name: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1)",
        &[&name],
    )
    .await?
    .get(0))
}

/// The hub schema version of the connected schema (0 when it has none).
pub async fn current(c: &Client) -> Result<i64, tokio_postgres::Error> {
    if !table_exists(c, "hub_schema_migrations").await? {
        return Ok(0);
    }
    Ok(c.query_one("SELECT COALESCE(MAX(version), 0) FROM hub_schema_migrations", &[]).await?.get(0))
}

/// Applies every migration not yet applied, under an advisory lock so that two nodes migrating
/// at once apply each migration once. Refuses a national system's schema (leaving it as it was)
/// and a schema newer than this build. Returns the versions applied.
pub async fn migrate(c: &Client, now_millis: i64) -> Result<Result<Vec<i64>, String>, tokio_postgres::Error> {
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = apply(c, now_millis).await;
    c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    result
}

async fn apply(c: &Client, now_millis: i64) -> Result<Result<Vec<i64>, String>, tokio_postgres::Error> {
    // Checked before anything is created, so that the wrong schema is left exactly as it was (a
    // hub schema that a national migration was pointed at by mistake stays the hub's).
    if !table_exists(c, "hub_schema_migrations").await? && table_exists(c, "schema_migrations").await? {
        return Ok(Err("this is a national system's schema, not the hub's".into()));
    }
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS hub_schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    crate::migrations::apply(c, &HUB_MIGRATIONS, now_millis).await
}
