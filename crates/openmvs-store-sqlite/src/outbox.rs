//! The outbox table both stores run on: a national system's one queue, or the hub's queue per
//! destination. Handing out a queue's due messages, with a lease or without, and the bookkeeping
//! every outbox shares ([`OutboxQueue`]) are written here once; delivering a message is each
//! store's own (at the hub it also counts a serial chunk's acknowledgement).

use openmvs_core::time::Timestamp;
use openmvs_store::decode;
use openmvs_store::{BoxFuture, OutboxQueue, QueueCounts, StoreResult, StoredOutboxMessage};
use rusqlite::{Connection, ToSql, params};

use crate::codec::{OUTBOX_COLUMNS, R, outbox, sql_err};
use crate::engine::Engine;
use crate::writer::Unit;

/// The due messages of a national system's one queue: live ones due at `?1`, each the oldest
/// live one of its ordering key, oldest first, at most `?2`. The head of every key is found by
/// walking the `outbox_by_key` index from key to key (one search each: the first live entry past
/// the previous head's key is the next key's oldest live message), then read by its `seq` (the
/// table is searched by its primary key alone, which the planner cannot know to be best): a
/// backlog of one product's messages costs a few index searches per round, where a scan of the
/// backlog made draining n messages of one key take time in n squared, on the writer.
const NATIONAL_DUE: &str = "FROM outbox o NOT INDEXED WHERE dead = 0 AND next_attempt_at <= ?1 \
     AND seq IN (WITH RECURSIVE h(s) AS ( \
     SELECT (SELECT seq FROM outbox INDEXED BY outbox_by_key WHERE dead = 0 ORDER BY ordering_key, seq LIMIT 1) \
     UNION ALL SELECT (SELECT n.seq FROM outbox n INDEXED BY outbox_by_key WHERE n.dead = 0 \
     AND n.ordering_key > (SELECT p.ordering_key FROM outbox p WHERE p.seq = h.s) \
     ORDER BY n.ordering_key, n.seq LIMIT 1) FROM h WHERE h.s IS NOT NULL) \
     SELECT s FROM h WHERE s IS NOT NULL) \
     ORDER BY seq LIMIT ?2";

/// The same for one of the hub's queues, destination `?3`, whose ordering keys count apart.
const HUB_DUE: &str = "FROM outbox o NOT INDEXED WHERE destination = ?3 AND dead = 0 AND next_attempt_at <= ?1 \
     AND seq IN (WITH RECURSIVE h(s) AS ( \
     SELECT (SELECT seq FROM outbox INDEXED BY outbox_by_key WHERE destination = ?3 AND dead = 0 ORDER BY ordering_key, seq LIMIT 1) \
     UNION ALL SELECT (SELECT n.seq FROM outbox n INDEXED BY outbox_by_key WHERE n.destination = ?3 AND n.dead = 0 \
     AND n.ordering_key > (SELECT p.ordering_key FROM outbox p WHERE p.seq = h.s) \
     ORDER BY n.ordering_key, n.seq LIMIT 1) FROM h WHERE h.s IS NOT NULL) \
     SELECT s FROM h WHERE s IS NOT NULL) \
     ORDER BY seq LIMIT ?2";

/// Takes the queue of `destination` (a national system's one queue when there is none) as runs
/// until `lease_until`: first the head of every key whose head is due at `now` ([`HUB_DUE`] or
/// [`NATIONAL_DUE`], at most `limit`), then, oldest first and up to `limit` in all, the messages
/// that follow a taken head in its key, each key's up to its first one not due. Each key's
/// followers are read from the `outbox_by_key` index, at most as many as there is room for, so a
/// long backlog of one key costs a round no more than it takes.
fn claim_runs(
    c: &Connection,
    destination: Option<&str>,
    now: Timestamp,
    limit: usize,
    lease_until: Timestamp,
) -> StoreResult<Vec<StoredOutboxMessage>> {
    let (now, lease_until) = (now.unix_millis(), lease_until.unix_millis());
    let mut heads: Vec<(i64, String)> = Vec::new();
    {
        let due = if destination.is_some() { HUB_DUE } else { NATIONAL_DUE };
        let limit_arg = limit as i64;
        let mut args: Vec<&dyn ToSql> = vec![&now, &limit_arg];
        args.extend(destination.as_ref().map(|d| d as &dyn ToSql));
        let mut s = c.prepare_cached(&format!("SELECT seq, ordering_key {due}")).map_err(sql_err)?;
        let mut rows = s.query(args.as_slice()).map_err(sql_err)?;
        while let Some(r) = rows.next().map_err(sql_err)? {
            heads.push((r.get(0).map_err(sql_err)?, r.get(1).map_err(sql_err)?));
        }
    }
    let room = limit.saturating_sub(heads.len());
    let mut taken: Vec<i64> = heads.iter().map(|(seq, _)| *seq).collect();
    if room > 0 {
        let mut followers = Vec::new();
        // `?1` is the destination at the hub; a national system's queue has none (`?1 IS NULL`).
        let mut s = c
            .prepare_cached(if destination.is_some() {
                "SELECT seq, next_attempt_at FROM outbox INDEXED BY outbox_by_key WHERE destination = ?1 \
                 AND ordering_key = ?2 AND seq > ?3 AND dead = 0 ORDER BY ordering_key, seq LIMIT ?4"
            } else {
                "SELECT seq, next_attempt_at FROM outbox INDEXED BY outbox_by_key WHERE ?1 IS NULL \
                 AND ordering_key = ?2 AND seq > ?3 AND dead = 0 ORDER BY ordering_key, seq LIMIT ?4"
            })
            .map_err(sql_err)?;
        for (head, key) in &heads {
            let mut rows = s.query(params![destination, key, head, room as i64]).map_err(sql_err)?;
            while let Some(r) = rows.next().map_err(sql_err)? {
                let (seq, at): (i64, i64) = (r.get(0).map_err(sql_err)?, r.get(1).map_err(sql_err)?);
                if at > now {
                    break;
                }
                followers.push(seq);
            }
        }
        followers.sort_unstable();
        followers.truncate(room);
        taken.extend(followers);
    }
    let mut out = Vec::with_capacity(taken.len());
    let sql = format!("UPDATE outbox SET next_attempt_at = ?2 WHERE seq = ?1 RETURNING {OUTBOX_COLUMNS}");
    for seq in taken {
        out.extend(messages(c, &sql, &[&seq, &lease_until])?);
    }
    out.sort_by_key(|m| m.seq);
    Ok(out)
}

/// Up to `limit` live messages due at `now` in the queue of `destination` (a national system's
/// one queue when there is none), oldest first; with `lease_until`, taken until then.
fn due(
    c: &Connection,
    destination: Option<&str>,
    now: Timestamp,
    limit: usize,
    lease_until: Option<Timestamp>,
) -> StoreResult<Vec<StoredOutboxMessage>> {
    let due = if destination.is_some() { HUB_DUE } else { NATIONAL_DUE };
    let (now, limit, lease_until) = (now.unix_millis(), limit as i64, lease_until.map(|t| t.unix_millis()));
    let mut args: Vec<&dyn ToSql> = vec![&now, &limit];
    args.extend(destination.as_ref().map(|d| d as &dyn ToSql));
    let sql = match &lease_until {
        None => format!("SELECT {OUTBOX_COLUMNS} {due}"),
        Some(t) => {
            args.push(t);
            let n = args.len();
            format!(
                "UPDATE outbox SET next_attempt_at = ?{n} WHERE seq IN (SELECT seq {due}) RETURNING {OUTBOX_COLUMNS}"
            )
        }
    };
    let mut out = messages(c, &sql, &args)?;
    out.sort_by_key(|m| m.seq);
    Ok(out)
}

/// Every message a statement returns.
fn messages(c: &Connection, sql: &str, args: &[&dyn ToSql]) -> StoreResult<Vec<StoredOutboxMessage>> {
    let mut s = c.prepare_cached(sql).map_err(sql_err)?;
    let mut rows = s.query(args).map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        out.push(outbox(r)?);
    }
    Ok(out)
}

impl<U: Unit> Engine<U> {
    /// The due messages of a queue ([`due`]): read on a read connection, or taken until
    /// `lease_until` by the writer, in one write transaction so that two relays never take the
    /// same message.
    pub(crate) fn outbox_due(
        &self,
        destination: Option<&str>,
        now: Timestamp,
        limit: usize,
        lease_until: Option<Timestamp>,
    ) -> BoxFuture<'static, StoreResult<Vec<StoredOutboxMessage>>> {
        let destination = destination.map(str::to_owned);
        let f = move |c: &Connection| due(c, destination.as_deref(), now, limit, lease_until);
        if lease_until.is_some() { self.exec(f) } else { self.read(f) }
    }
}

impl<U: Unit> Engine<U> {
    /// The runs of a queue ([`claim_runs`]), taken until `lease_until` by the writer.
    pub(crate) fn outbox_claim_runs(
        &self,
        destination: Option<&str>,
        now: Timestamp,
        limit: usize,
        lease_until: Timestamp,
    ) -> BoxFuture<'static, StoreResult<Vec<StoredOutboxMessage>>> {
        let destination = destination.map(str::to_owned);
        self.exec(move |c| claim_runs(c, destination.as_deref(), now, limit, lease_until))
    }
}

impl<U: Unit> OutboxQueue for Engine<U> {
    fn failed(
        &self,
        seq: u64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let error = error.to_owned();
        self.exec(move |c| {
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3, dead = ?4 \
                 WHERE seq = ?1",
                params![seq as i64, error, next_attempt_at.unix_millis(), dead],
            )
            .map_err(sql_err)?;
            Ok(())
        })
    }

    fn dead_letters(&self) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.read(move |c| {
            messages(c, &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE dead = 1 ORDER BY seq"), &[])
        })
    }

    fn replay(&self, seq: u64, now: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        self.exec(move |c| {
            let n = c
                .execute(
                    "UPDATE outbox SET dead = 0, attempts = 0, next_attempt_at = ?2 WHERE seq = ?1 AND dead = 1",
                    params![seq as i64, now.unix_millis()],
                )
                .map_err(sql_err)?;
            Ok(n > 0)
        })
    }

    fn resume(&self, now: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        self.exec(move |c| {
            let n = c
                .execute(
                    "UPDATE outbox SET next_attempt_at = ?1 WHERE dead = 0 AND next_attempt_at > ?1",
                    params![now.unix_millis()],
                )
                .map_err(sql_err)?;
            Ok(n as u64)
        })
    }

    fn pending(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.read(move |c| {
            let n: i64 = c
                .query_row("SELECT COUNT(*) FROM outbox WHERE dead = 0", [], |r| r.get(0))
                .map_err(sql_err)?;
            Ok(n as u64)
        })
    }

    fn queue_counts(&self) -> BoxFuture<'_, StoreResult<Vec<QueueCounts>>> {
        self.read(move |c| {
            let mut s = c.prepare_cached(decode::QUEUE_COUNTS).map_err(sql_err)?;
            let mut rows = s.query([]).map_err(sql_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql_err)? {
                out.push(decode::queue_counts(&R(r))?);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{HUB_DUE, NATIONAL_DUE};

    /// The steps of SQLite's plan for `sql` on a store of `hub`'s or a national system's schema.
    fn plan(hub: bool, sql: &str, args: usize) -> Vec<String> {
        let mut c = Connection::open_in_memory().expect("a database");
        let migrated =
            if hub { crate::hub::schema::migrate(&mut c, 0) } else { crate::schema::migrate(&mut c, 0) };
        migrated.expect("migrates").expect("migrates");
        let params: Vec<i64> = vec![0; args];
        let mut s = c.prepare(&format!("EXPLAIN QUERY PLAN SELECT seq {sql}")).expect("prepares");
        let rows =
            s.query_map(rusqlite::params_from_iter(params), |r| r.get::<_, String>(3)).expect("explains");
        rows.map(|r| r.expect("a step")).collect()
    }

    #[test]
    fn the_due_messages_are_found_by_index_searches_without_reading_the_backlog() {
        for (hub, sql, args) in [(false, NATIONAL_DUE, 2), (true, HUB_DUE, 3)] {
            let steps = plan(hub, sql, args);
            // A scan of the table, or of an index other than the walk of the keys (in order,
            // stopping at the first live entry), reads the backlog.
            let scans: Vec<&String> = steps
                .iter()
                .filter(|s| {
                    s.starts_with("SCAN") && !s.starts_with("SCAN h") && !s.starts_with("SCAN CONSTANT")
                })
                .filter(|s| !s.contains("USING INDEX outbox_by_key"))
                .collect();
            assert!(scans.is_empty(), "hub {hub}: the plan scans the outbox: {steps:#?}");
            // A search of the due messages by time reads every message due, the whole backlog.
            assert!(
                !steps.iter().any(|s| s.contains("outbox_due")),
                "hub {hub}: the plan reads the due messages by time: {steps:#?}"
            );
            assert!(
                steps.iter().any(|s| s.starts_with("SEARCH o USING INTEGER PRIMARY KEY")),
                "hub {hub}: the heads are read by their seq: {steps:#?}"
            );
            assert!(
                steps.iter().any(|s| s.contains("USING INDEX outbox_by_key")),
                "hub {hub}: the keys are walked in their index: {steps:#?}"
            );
        }
    }
}
