//! The outbox table both stores run on: a national system's one queue, or the hub's queue per
//! destination. Handing out a queue's due messages, with a lease or without, and the bookkeeping
//! every outbox shares ([`OutboxQueue`]) are written here once; delivering a message is each
//! store's own (at the hub it also counts a serial chunk's acknowledgement).

use std::sync::{Arc, LazyLock};

use openmvs_core::time::Timestamp;
use openmvs_store::decode::{self, Columns, OUTBOX_COLUMNS};
use openmvs_store::{BoxFuture, OutboxQueue, QueueCounts, StoreResult, StoredOutboxMessage};
use tokio_postgres::Row;

use crate::codec::R;
use crate::pool::Pool;
use crate::{ms, p};

/// The due messages of a national system's one queue: live ones due at `$1`, each the oldest
/// live one of its ordering key, oldest first, at most `$2`. The head of every key is found by
/// walking the `outbox_by_key` index from key to key (one lookup each: the first entry past the
/// previous key is the next key's oldest message), then read by its `seq`: a backlog of one
/// product's messages costs a few index lookups per round, where a filter over the backlog made
/// draining n messages of one key take time in n squared.
const NATIONAL_DUE: &str = "FROM outbox o WHERE NOT dead AND next_attempt_at <= $1 \
     AND seq = ANY(ARRAY(WITH RECURSIVE k(key, seq) AS ( \
     (SELECT ordering_key, seq FROM outbox WHERE NOT dead ORDER BY ordering_key, seq LIMIT 1) \
     UNION ALL SELECT n.ordering_key, n.seq FROM k, LATERAL (SELECT ordering_key, seq FROM outbox \
     WHERE NOT dead AND ordering_key > k.key ORDER BY ordering_key, seq LIMIT 1) n) \
     SELECT seq FROM k)) \
     ORDER BY seq LIMIT $2";

/// The same for one of the hub's queues, destination `$3`, whose ordering keys count apart.
pub(crate) const HUB_DUE: &str = "FROM outbox o WHERE destination = $3 AND NOT dead AND next_attempt_at <= $1 \
     AND seq = ANY(ARRAY(WITH RECURSIVE k(key, seq) AS ( \
     (SELECT ordering_key, seq FROM outbox WHERE destination = $3 AND NOT dead \
     ORDER BY ordering_key, seq LIMIT 1) \
     UNION ALL SELECT n.ordering_key, n.seq FROM k, LATERAL (SELECT ordering_key, seq FROM outbox \
     WHERE destination = $3 AND NOT dead AND ordering_key > k.key ORDER BY ordering_key, seq LIMIT 1) n) \
     SELECT seq FROM k)) \
     ORDER BY seq LIMIT $2";

/// Takes a queue as runs until the parameter after the due statement's: first the head of every
/// key whose head is due at `$1` (`due`: [`HUB_DUE`] or [`NATIONAL_DUE`], at most `$2`, locked, and
/// skipped when another relay is claiming it), then, oldest first and up to `$2` in all, the
/// messages that follow a taken head in its key, each key's up to its first one not due. The
/// followers of each head are read from the `outbox_by_key` index, at most `$2` of them, so a long
/// backlog of one key costs a round no more than it takes. Another relay never takes a follower:
/// it takes a key only by its head.
fn runs_claim(due: &str, hub: bool) -> String {
    let (same_queue, lease) = if hub { ("destination = $3 AND ", "$4") } else { ("", "$3") };
    format!(
        "WITH heads AS (SELECT seq, ordering_key {due} FOR UPDATE SKIP LOCKED), \
         fol AS (SELECT f.seq, bool_and(f.next_attempt_at <= $1) OVER (PARTITION BY h.seq ORDER BY f.seq) AS open \
         FROM heads h CROSS JOIN LATERAL (SELECT seq, next_attempt_at FROM outbox WHERE {same_queue}\
         ordering_key = h.ordering_key AND NOT dead AND seq > h.seq ORDER BY ordering_key, seq LIMIT $2) f), \
         more AS (SELECT seq FROM fol WHERE open ORDER BY seq \
         LIMIT GREATEST($2 - (SELECT count(*) FROM heads), 0)) \
         UPDATE outbox SET next_attempt_at = {lease} WHERE seq IN (SELECT seq FROM heads UNION ALL SELECT seq FROM more) \
         RETURNING {OUTBOX_COLUMNS}"
    )
}

/// The statements over the due messages of one kind of queue.
struct Queue {
    /// Reads them.
    due: String,
    /// Takes them until the parameter after theirs. Rows another relay is claiming right now are
    /// skipped, not waited for; a row it claimed and committed is re-checked and found not due.
    claim: String,
}

impl Queue {
    fn new(due: &str, lease: usize) -> Queue {
        Queue {
            due: format!("SELECT {OUTBOX_COLUMNS} {due}"),
            claim: format!(
                "UPDATE outbox SET next_attempt_at = ${lease} WHERE seq IN (SELECT seq {due} \
                 FOR UPDATE SKIP LOCKED) RETURNING {OUTBOX_COLUMNS}"
            ),
        }
    }

    /// The queue of `destination`, or a national system's one queue.
    fn of(destination: Option<&str>) -> &'static Queue {
        static NATIONAL: LazyLock<Queue> = LazyLock::new(|| Queue::new(NATIONAL_DUE, 3));
        static HUB: LazyLock<Queue> = LazyLock::new(|| Queue::new(HUB_DUE, 4));
        if destination.is_some() { &HUB } else { &NATIONAL }
    }
}

fn outbox_row(r: &Row) -> StoreResult<StoredOutboxMessage> {
    decode::outbox(&R(r))
}

/// The outbox table, over the node's shared connections.
pub(crate) struct Outbox {
    pool: Arc<Pool>,
}

impl Outbox {
    pub(crate) fn new(pool: Arc<Pool>) -> Outbox {
        Outbox { pool }
    }

    /// Up to `limit` live messages due at `now` in the queue of `destination` (a national
    /// system's one queue when there is none), oldest first; with `lease_until`, taken until then.
    pub(crate) fn due(
        &self,
        destination: Option<&str>,
        now: Timestamp,
        limit: usize,
        lease_until: Option<Timestamp>,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        let destination = destination.map(str::to_owned);
        Box::pin(async move {
            let queue = Queue::of(destination.as_deref());
            let mut params = vec![ms(now), p(limit as i64)];
            params.extend(destination.map(p));
            let sql = match lease_until {
                None => &queue.due,
                Some(t) => {
                    params.push(ms(t));
                    &queue.claim
                }
            };
            let mut out = self.pool.rows(sql, params, outbox_row).await?;
            out.sort_by_key(|m| m.seq);
            Ok(out)
        })
    }
}

impl Outbox {
    /// Takes the runs of the queue of `destination` (a national system's one queue when there is
    /// none) until `lease_until` ([`runs_claim`]).
    pub(crate) fn claim_runs(
        &self,
        destination: Option<&str>,
        now: Timestamp,
        limit: usize,
        lease_until: Timestamp,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        static HUB: LazyLock<String> = LazyLock::new(|| runs_claim(HUB_DUE, true));
        static NATIONAL: LazyLock<String> = LazyLock::new(|| runs_claim(NATIONAL_DUE, false));
        let destination = destination.map(str::to_owned);
        Box::pin(async move {
            let mut params = vec![ms(now), p(limit as i64)];
            let sql = if destination.is_some() { &HUB } else { &NATIONAL };
            params.extend(destination.map(p));
            params.push(ms(lease_until));
            let mut out = self.pool.rows(sql, params, outbox_row).await?;
            out.sort_by_key(|m| m.seq);
            Ok(out)
        })
    }
}

impl OutboxQueue for Outbox {
    fn failed(
        &self,
        seq: u64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let error = error.to_owned();
        Box::pin(async move {
            self.pool
                .exec(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, dead = $4 \
                     WHERE seq = $1",
                    vec![p(seq as i64), p(error), ms(next_attempt_at), p(dead)],
                )
                .await
                .map(|_| ())
        })
    }

    fn dead_letters(&self) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        static DEAD: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE dead ORDER BY seq"));
        Box::pin(async move { self.pool.rows(&DEAD, vec![], outbox_row).await })
    }

    fn replay(&self, seq: u64, now: Timestamp) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let n = self
                .pool
                .exec(
                    "UPDATE outbox SET dead = FALSE, attempts = 0, next_attempt_at = $2 WHERE seq = $1 AND dead",
                    vec![p(seq as i64), ms(now)],
                )
                .await?;
            Ok(n > 0)
        })
    }

    fn resume(&self, now: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            self.pool
                .exec(
                    "UPDATE outbox SET next_attempt_at = $1 WHERE NOT dead AND next_attempt_at > $1",
                    vec![ms(now)],
                )
                .await
        })
    }

    fn pending(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let n =
                self.pool.row("SELECT COUNT(*) FROM outbox WHERE NOT dead", vec![], |r| R(r).int(0)).await?;
            u64::try_from(n.unwrap_or(0)).map_err(|_| decode::corrupt(format!("count {n:?}")))
        })
    }

    fn queue_counts(&self) -> BoxFuture<'_, StoreResult<Vec<QueueCounts>>> {
        Box::pin(async move {
            self.pool.rows(decode::QUEUE_COUNTS, vec![], |r| decode::queue_counts(&R(r))).await
        })
    }
}
