//! The agent's durable queue: every operation it recorded while the national system could not
//! be reached, kept in SQLite (WAL, `synchronous=FULL`) and committed before the pharmacy gets
//! its answer; what the replay made of each one, and the pharmacist's acknowledgements.
//!
//! One table, one row per recorded operation. A row is pending until the replay finishes it with
//! an outcome; finished rows stay (the pharmacist's list, the figures, a repeated request). The
//! order of a pack's operations is the order of `seq`.

use std::path::Path;
use std::sync::Mutex;

use openmvs_core::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

/// A failure of the queue's database.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A statement failed.
    #[error("the agent's queue ({what}): {source}")]
    Sql {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: rusqlite::Error,
    },
    /// Its directory could not be made.
    #[error("the agent's queue ({what}): {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl QueueError {
    /// A failure of the file system around the database.
    pub fn from_io(what: String, source: std::io::Error) -> QueueError {
        QueueError::Io { what, source }
    }
}

fn err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> QueueError {
    move |source| QueueError::Sql { what, source }
}

/// What the replay made of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done as recorded.
    Applied,
    /// The national system refused it.
    Refused,
    /// Its verify showed that the pack must not be dispensed (a decommission was then not sent).
    NotDispensable,
    /// Not sent: an undo of an operation that was never applied.
    NotSent,
}

impl Outcome {
    /// The name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "APPLIED",
            Outcome::Refused => "REFUSED",
            Outcome::NotDispensable => "NOT_DISPENSABLE",
            Outcome::NotSent => "NOT_SENT",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Applied, Outcome::Refused, Outcome::NotDispensable, Outcome::NotSent]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// An operation to record.
#[derive(Debug, Clone)]
pub struct NewOp {
    /// The pack's key (scheme, product code and serial): operations with one key replay in order.
    pub pack: String,
    /// `verify`, `supply`, `supply-undo`, ...
    pub command: String,
    /// The pharmacy software's transaction id.
    pub client_trx_id: String,
    /// The request body as received (JSON), sent as is at the replay.
    pub request: String,
    /// The identifier as read, for the pharmacist's list.
    pub scheme: String,
    /// The product code.
    pub product_code: String,
    /// The serial.
    pub serial: String,
    /// The batch.
    pub batch: String,
    /// The expiry as encoded.
    pub expiry: String,
    /// When.
    pub recorded_at: Timestamp,
}

/// A recorded operation, as the queue holds it.
#[derive(Debug, Clone)]
pub struct Op {
    /// Its place in the queue.
    pub seq: i64,
    /// What was recorded.
    pub new: NewOp,
    /// What the replay made of it, once finished.
    pub outcome: Option<Outcome>,
    /// The answer kept when it finished (`{"status": N, "body": ...}`).
    pub answer: Option<String>,
}

/// How an operation finished.
#[derive(Debug, Clone)]
pub struct Finish {
    /// Which.
    pub seq: i64,
    /// The outcome.
    pub outcome: Outcome,
    /// The national system's return code, or the agent's reason.
    pub return_code: String,
    /// What it means.
    pub message: String,
    /// The alert raised: id and code.
    pub alert: Option<(String, String)>,
    /// The answer that decided it (`{"status": N, "body": ...}`), none when nothing was sent.
    pub answer: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A finished operation that did not apply, for the pharmacist.
#[derive(Debug, Clone)]
pub struct ProblemRow {
    /// The operation.
    pub op: Op,
    /// Its outcome.
    pub outcome: Outcome,
    /// The return code.
    pub return_code: String,
    /// What it means.
    pub message: String,
    /// The alert: id and code.
    pub alert: Option<(String, String)>,
    /// When the replay found it.
    pub found_at: Timestamp,
    /// When and by whom it was acknowledged.
    pub acknowledged: Option<(Timestamp, Option<String>)>,
}

/// The queue's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pending operations.
    pub pending: u64,
    /// When the oldest of them was recorded.
    pub oldest: Option<Timestamp>,
    /// Operations finished (replayed), whatever their outcome.
    pub replayed: u64,
    /// Problems not acknowledged.
    pub problems_open: u64,
    /// Problems in total.
    pub problems: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    pack TEXT NOT NULL,
    command TEXT NOT NULL,
    client_trx_id TEXT NOT NULL UNIQUE,
    request TEXT NOT NULL,
    scheme TEXT NOT NULL,
    product_code TEXT NOT NULL,
    serial TEXT NOT NULL,
    batch TEXT NOT NULL,
    expiry TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    not_before INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    return_code TEXT,
    message TEXT,
    alert_id TEXT,
    alert_code TEXT,
    answer TEXT,
    finished_at INTEGER,
    acknowledged_at INTEGER,
    acknowledged_by TEXT
);
CREATE INDEX IF NOT EXISTS ops_pending ON ops(pack, seq) WHERE outcome IS NULL;
CREATE INDEX IF NOT EXISTS ops_problems ON ops(seq) WHERE outcome IS NOT NULL AND outcome <> 'APPLIED';
";

const OP_COLUMNS: &str = "seq, pack, command, client_trx_id, request, scheme, product_code, serial, batch, expiry, \
                          recorded_at, outcome, answer";

fn op_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Op> {
    let outcome: Option<String> = r.get(11)?;
    Ok(Op {
        seq: r.get(0)?,
        new: NewOp {
            pack: r.get(1)?,
            command: r.get(2)?,
            client_trx_id: r.get(3)?,
            request: r.get(4)?,
            scheme: r.get(5)?,
            product_code: r.get(6)?,
            serial: r.get(7)?,
            batch: r.get(8)?,
            expiry: r.get(9)?,
            recorded_at: Timestamp::from_unix_millis(r.get(10)?),
        },
        outcome: outcome.as_deref().and_then(Outcome::parse),
        answer: r.get(12)?,
    })
}

/// The queue in its file.
pub struct Queue {
    conn: Mutex<Connection>,
}

impl Queue {
    /// Opens (or creates) the queue at `path`.
    pub fn open(path: &Path) -> Result<Queue, QueueError> {
        let conn = Connection::open(path).map_err(err("open"))?;
        // WAL with a full sync at every commit: a recorded operation survives a power cut once
        // the pharmacy has its answer.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
        )
        .map_err(err("configure"))?;
        conn.execute_batch(SCHEMA).map_err(err("create the schema"))?;
        Ok(Queue { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an operation; its `seq`.
    pub fn record(&self, op: &NewOp) -> Result<i64, QueueError> {
        let c = self.conn();
        c.execute(
            "INSERT INTO ops (pack, command, client_trx_id, request, scheme, product_code, serial, batch, expiry, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                op.pack,
                op.command,
                op.client_trx_id,
                op.request,
                op.scheme,
                op.product_code,
                op.serial,
                op.batch,
                op.expiry,
                op.recorded_at.unix_millis()
            ],
        )
        .map_err(err("record"))?;
        Ok(c.last_insert_rowid())
    }

    /// The operation recorded under a transaction id, if any.
    pub fn by_trx(&self, client_trx_id: &str) -> Result<Option<Op>, QueueError> {
        self.conn()
            .query_row(
                &format!("SELECT {OP_COLUMNS} FROM ops WHERE client_trx_id = ?1"),
                [client_trx_id],
                op_of,
            )
            .optional()
            .map_err(err("read"))
    }

    /// Whether a pack has pending operations.
    pub fn pack_pending(&self, pack: &str) -> Result<bool, QueueError> {
        self.conn()
            .query_row("SELECT EXISTS (SELECT 1 FROM ops WHERE pack = ?1 AND outcome IS NULL)", [pack], |r| {
                r.get(0)
            })
            .map_err(err("read"))
    }

    /// Up to `limit` operations due at `now`: the oldest pending operation of each pack (a pack's
    /// later operations wait for it), when it is not postponed past `now`; in recording order.
    pub fn due(&self, limit: usize, now: Timestamp) -> Result<Vec<Op>, QueueError> {
        let c = self.conn();
        let mut stmt = c
            .prepare_cached(&format!(
                "SELECT {OP_COLUMNS} FROM ops o
                 WHERE outcome IS NULL AND not_before <= ?1
                   AND NOT EXISTS (SELECT 1 FROM ops e WHERE e.pack = o.pack AND e.outcome IS NULL AND e.seq < o.seq)
                 ORDER BY seq LIMIT ?2"
            ))
            .map_err(err("read"))?;
        stmt.query_map(params![now.unix_millis(), limit as i64], op_of)
            .map_err(err("read"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err("read"))
    }

    /// The earliest time a pending operation is due, if any is postponed and none is due now.
    pub fn next_due(&self) -> Result<Option<Timestamp>, QueueError> {
        let t: Option<i64> = self
            .conn()
            .query_row("SELECT MIN(not_before) FROM ops WHERE outcome IS NULL", [], |r| r.get(0))
            .map_err(err("read"))?;
        Ok(t.map(Timestamp::from_unix_millis))
    }

    /// Postpones a pending operation (and with it its pack's later ones) until `at`.
    pub fn postpone(&self, seq: i64, at: Timestamp) -> Result<(), QueueError> {
        self.conn()
            .execute(
                "UPDATE ops SET not_before = ?2 WHERE seq = ?1 AND outcome IS NULL",
                params![seq, at.unix_millis()],
            )
            .map_err(err("postpone"))?;
        Ok(())
    }

    /// Finishes operations, in one transaction.
    pub fn finish(&self, done: &[Finish]) -> Result<(), QueueError> {
        if done.is_empty() {
            return Ok(());
        }
        let mut c = self.conn();
        let tx = c.transaction().map_err(err("finish"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE ops SET outcome = ?2, return_code = ?3, message = ?4, alert_id = ?5, alert_code = ?6,
                                    answer = ?7, finished_at = ?8
                     WHERE seq = ?1 AND outcome IS NULL",
                )
                .map_err(err("finish"))?;
            for f in done {
                let (alert_id, alert_code) = f.alert.clone().unzip();
                stmt.execute(params![
                    f.seq,
                    f.outcome.as_str(),
                    f.return_code,
                    f.message,
                    alert_id,
                    alert_code,
                    f.answer,
                    f.at.unix_millis()
                ])
                .map_err(err("finish"))?;
            }
        }
        tx.commit().map_err(err("finish"))
    }

    /// The outcome of the latest operation `command` on `pack` recorded before `seq`, if there is
    /// one (`Some(None)`: still pending).
    pub fn latest_before(
        &self,
        pack: &str,
        command: &str,
        seq: i64,
    ) -> Result<Option<Option<Outcome>>, QueueError> {
        let found: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT outcome FROM ops WHERE pack = ?1 AND command = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT 1",
                params![pack, command, seq],
                |r| r.get(0),
            )
            .optional()
            .map_err(err("read"))?;
        Ok(found.map(|o| o.as_deref().and_then(Outcome::parse)))
    }

    /// The figures.
    pub fn counts(&self) -> Result<Counts, QueueError> {
        self.conn()
            .query_row(
                "SELECT
                    (SELECT COUNT(*) FROM ops WHERE outcome IS NULL),
                    (SELECT MIN(recorded_at) FROM ops WHERE outcome IS NULL),
                    (SELECT COUNT(*) FROM ops WHERE outcome IS NOT NULL),
                    (SELECT COUNT(*) FROM ops WHERE outcome IS NOT NULL AND outcome <> 'APPLIED' AND acknowledged_at IS NULL),
                    (SELECT COUNT(*) FROM ops WHERE outcome IS NOT NULL AND outcome <> 'APPLIED')",
                [],
                |r| {
                    Ok(Counts {
                        pending: r.get::<_, i64>(0)? as u64,
                        oldest: r.get::<_, Option<i64>>(1)?.map(Timestamp::from_unix_millis),
                        replayed: r.get::<_, i64>(2)? as u64,
                        problems_open: r.get::<_, i64>(3)? as u64,
                        problems: r.get::<_, i64>(4)? as u64,
                    })
                },
            )
            .map_err(err("read"))
    }

    /// The problems, oldest first: the open ones only, or all; at most `limit`.
    pub fn problems(&self, open_only: bool, limit: usize) -> Result<Vec<ProblemRow>, QueueError> {
        let c = self.conn();
        let open = if open_only { "AND acknowledged_at IS NULL" } else { "" };
        let mut stmt = c
            .prepare_cached(&format!(
                "SELECT {OP_COLUMNS}, return_code, message, alert_id, alert_code, finished_at, acknowledged_at, acknowledged_by
                 FROM ops WHERE outcome IS NOT NULL AND outcome <> 'APPLIED' {open} ORDER BY seq LIMIT ?1"
            ))
            .map_err(err("read"))?;
        stmt.query_map([limit as i64], |r| {
            let op = op_of(r)?;
            let alert = match (r.get::<_, Option<String>>(15)?, r.get::<_, Option<String>>(16)?) {
                (Some(id), Some(code)) => Some((id, code)),
                _ => None,
            };
            let acknowledged = r
                .get::<_, Option<i64>>(18)?
                .map(|at| -> rusqlite::Result<_> { Ok((Timestamp::from_unix_millis(at), r.get(19)?)) })
                .transpose()?;
            Ok(ProblemRow {
                outcome: op.outcome.unwrap_or(Outcome::Refused),
                op,
                return_code: r.get(13)?,
                message: r.get(14)?,
                alert,
                found_at: Timestamp::from_unix_millis(r.get(17)?),
                acknowledged,
            })
        })
        .map_err(err("read"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err("read"))
    }

    /// Acknowledges a problem; whether there was one (not yet acknowledged) with this id.
    pub fn acknowledge(&self, id: i64, by: Option<&str>, at: Timestamp) -> Result<bool, QueueError> {
        let n = self
            .conn()
            .execute(
                "UPDATE ops SET acknowledged_at = ?2, acknowledged_by = ?3
                 WHERE seq = ?1 AND outcome IS NOT NULL AND outcome <> 'APPLIED' AND acknowledged_at IS NULL",
                params![id, at.unix_millis(), by],
            )
            .map_err(err("acknowledge"))?;
        Ok(n == 1)
    }

    /// Whether a problem with this id exists (acknowledged or not).
    pub fn is_problem(&self, id: i64) -> Result<bool, QueueError> {
        self.conn()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM ops WHERE seq = ?1 AND outcome IS NOT NULL AND outcome <> 'APPLIED')",
                [id],
                |r| r.get(0),
            )
            .map_err(err("read"))
    }
}
