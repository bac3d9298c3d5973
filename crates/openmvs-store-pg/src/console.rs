//! The console's history and incidents (see `openmvs_store::SlaStore` and `IncidentStore`), in
//! the same tables of a national schema and the hub's; every node of a system reads and writes the
//! same rows.

use openmvs_store::{
    Impact, IncidentFilter, IncidentNote, IncidentRecord, IncidentStatus, NewIncident, SlaNodeDay,
    StoreError, StoreResult, decode_classes, encode_classes, encode_note, incident_record,
};
use tokio_postgres::Row;

use crate::codec::R;
use crate::p;
use crate::pool::Pool;
use openmvs_store::decode::Columns;

/// The tables, created by a migration of each schema.
pub(crate) const SCHEMA: &str = r#"
-- Each node's service-level figures of each day, replaced as the node writes them again.
CREATE TABLE sla_days (
    scope TEXT NOT NULL,
    day BIGINT NOT NULL,
    node TEXT NOT NULL,
    observed_minutes BIGINT NOT NULL,
    ready_minutes BIGINT NOT NULL,
    figures TEXT NOT NULL,
    PRIMARY KEY (scope, day, node)
);
CREATE INDEX sla_days_by_day ON sla_days (day);
-- Incidents with their timeline (a JSON array); one unresolved incident per scope and rule.
CREATE TABLE incidents (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope TEXT NOT NULL,
    rule TEXT,
    title TEXT NOT NULL,
    impact TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    resolved_at BIGINT,
    notes TEXT NOT NULL
);
CREATE UNIQUE INDEX incidents_open_rule ON incidents (scope, rule) WHERE resolved_at IS NULL AND rule IS NOT NULL;
"#;

/// The columns `record` reads, in its order.
macro_rules! columns {
    () => {
        "id, scope, rule, title, impact, status, opened_at, resolved_at, notes"
    };
}

pub(crate) async fn put_sla(pool: &Pool, rows: Vec<SlaNodeDay>) -> StoreResult<()> {
    for r in rows {
        pool.exec(
            "INSERT INTO sla_days (scope, day, node, observed_minutes, ready_minutes, figures) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, day, node) DO UPDATE SET \
             observed_minutes = excluded.observed_minutes, ready_minutes = excluded.ready_minutes, \
             figures = excluded.figures",
            vec![
                p(r.scope.clone()),
                p(r.day),
                p(r.node.clone()),
                p(i64::from(r.observed_minutes)),
                p(i64::from(r.ready_minutes)),
                p(encode_classes(&r.classes)),
            ],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn sla_days(pool: &Pool, from_day: i64, to_day: i64) -> StoreResult<Vec<SlaNodeDay>> {
    pool.rows(
        "SELECT scope, day, node, observed_minutes, ready_minutes, figures FROM sla_days \
         WHERE day BETWEEN $1 AND $2 ORDER BY scope, day, node",
        vec![p(from_day), p(to_day)],
        |r| {
            let r = R(r);
            let minutes = |i| {
                u32::try_from(r.int(i)?)
                    .map_err(|_| StoreError::Corrupt(format!("SLA minutes in column {i}")))
            };
            Ok(SlaNodeDay {
                scope: r.text(0)?,
                day: r.int(1)?,
                node: r.text(2)?,
                observed_minutes: minutes(3)?,
                ready_minutes: minutes(4)?,
                classes: decode_classes(&r.text(5)?)?,
            })
        },
    )
    .await
}

fn record(row: &Row) -> StoreResult<IncidentRecord> {
    let r = R(row);
    incident_record(
        r.int(0)?,
        r.text(1)?,
        r.opt_text(2)?,
        r.text(3)?,
        &r.text(4)?,
        &r.text(5)?,
        r.int(6)?,
        r.opt_int(7)?,
        &r.text(8)?,
    )
}

fn id_param(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

pub(crate) async fn incident(pool: &Pool, id: u64) -> StoreResult<Option<IncidentRecord>> {
    const SQL: &str = concat!("SELECT ", columns!(), " FROM incidents WHERE id = $1");
    pool.row(SQL, vec![p(id_param(id))], record).await
}

pub(crate) async fn open_incident(pool: &Pool, new: NewIncident) -> StoreResult<(IncidentRecord, bool)> {
    const INSERT: &str = concat!(
        "INSERT INTO incidents (scope, rule, title, impact, status, opened_at, resolved_at, notes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING ",
        columns!()
    );
    const OPEN: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM incidents WHERE scope = $1 AND rule = $2 AND resolved_at IS NULL"
    );
    let resolved = (new.note.status == IncidentStatus::Resolved).then_some(new.note.at.unix_millis());
    // Two nodes may apply the same rule at once: the index lets one insert, and the other reads
    // what it inserted; an incident resolved in between is opened again.
    for _ in 0..3 {
        let params = vec![
            p(new.scope.clone()),
            p(new.rule.clone()),
            p(new.title.clone()),
            p(new.impact.as_str()),
            p(new.note.status.as_str()),
            p(new.note.at.unix_millis()),
            p(resolved),
            p(format!("[{}]", encode_note(&new.note))),
        ];
        if let Some(rec) = pool.row(INSERT, params, record).await? {
            return Ok((rec, true));
        }
        if let Some(rec) = pool.row(OPEN, vec![p(new.scope.clone()), p(new.rule.clone())], record).await? {
            return Ok((rec, false));
        }
    }
    Err(StoreError::Unavailable("an incident could be neither opened nor found".into()))
}

pub(crate) async fn note_incident(
    pool: &Pool,
    id: u64,
    note: IncidentNote,
    impact: Option<Impact>,
) -> StoreResult<Option<IncidentRecord>> {
    const SQL: &str = concat!(
        "UPDATE incidents SET notes = (notes::jsonb || jsonb_build_array($2::text::jsonb))::text, status = $3, \
         resolved_at = CASE WHEN $3 = 'resolved' THEN $4::bigint ELSE NULL END, impact = COALESCE($5, impact) \
         WHERE id = $1 AND resolved_at IS NULL RETURNING ",
        columns!()
    );
    pool.row(
        SQL,
        vec![
            p(id_param(id)),
            p(encode_note(&note)),
            p(note.status.as_str()),
            p(note.at.unix_millis()),
            p(impact.map(Impact::as_str)),
        ],
        record,
    )
    .await
}

pub(crate) async fn incidents(pool: &Pool, f: IncidentFilter) -> StoreResult<Vec<IncidentRecord>> {
    const SQL: &str = concat!(
        "SELECT ",
        columns!(),
        " FROM incidents WHERE id < $1 AND (NOT $2 OR resolved_at IS NULL) ORDER BY id DESC LIMIT $3"
    );
    let before = f.before_id.map_or(i64::MAX, id_param);
    pool.rows(SQL, vec![p(before), p(f.open_only), p(f.limit() as i64)], record).await
}

/// Implements the console's traits for an engine whose `pool` field reads and writes.
macro_rules! pg_console {
    ($store:ty) => {
        impl openmvs_store::SlaStore for $store {
            fn put_sla(
                &self,
                rows: Vec<openmvs_store::SlaNodeDay>,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<()>> {
                Box::pin($crate::console::put_sla(&self.pool, rows))
            }
            fn sla_days(
                &self,
                from_day: i64,
                to_day: i64,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Vec<openmvs_store::SlaNodeDay>>> {
                Box::pin($crate::console::sla_days(&self.pool, from_day, to_day))
            }
        }
        impl openmvs_store::IncidentStore for $store {
            fn open_incident(
                &self,
                new: openmvs_store::NewIncident,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<(openmvs_store::IncidentRecord, bool)>> {
                Box::pin($crate::console::open_incident(&self.pool, new))
            }
            fn note_incident(
                &self,
                id: u64,
                note: openmvs_store::IncidentNote,
                impact: Option<openmvs_store::Impact>,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Option<openmvs_store::IncidentRecord>>> {
                Box::pin($crate::console::note_incident(&self.pool, id, note, impact))
            }
            fn incident(
                &self,
                id: u64,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Option<openmvs_store::IncidentRecord>>> {
                Box::pin($crate::console::incident(&self.pool, id))
            }
            fn incidents(
                &self,
                filter: openmvs_store::IncidentFilter,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Vec<openmvs_store::IncidentRecord>>> {
                Box::pin($crate::console::incidents(&self.pool, filter))
            }
        }
    };
}
pub(crate) use pg_console;

/// The audit search of both schemas (see `openmvs_store::AuditStore::audit_search`): by the
/// subject index when the query names subjects, else in commit order.
pub(crate) async fn audit_search(
    pool: &Pool,
    q: openmvs_store::AuditQuery,
) -> StoreResult<Vec<(u64, openmvs_audit::Sealed)>> {
    macro_rules! tail {
        () => {
            "pos > $1 AND pos <= $2 AND ($3::text IS NULL OR actor = $3) AND ($4::text IS NULL OR location = $4) \
             AND ($5::text IS NULL OR operation = $5) AND ($6::bigint IS NULL OR at >= $6) \
             AND ($7::bigint IS NULL OR at < $7) AND ($9::text IS NULL OR (subject >= $9 AND subject < $10)) \
             ORDER BY pos LIMIT $8"
        };
    }
    let by_subject = !q.subjects.is_empty();
    let sql: &'static str = if by_subject {
        concat!(
            "SELECT pos, market, seq, at, actor, role, location, operation, subject, return_code, request, \
             result, prev_hash, hash FROM audit WHERE subject IN ($11, $12, $13) AND ",
            tail!()
        )
    } else {
        concat!(
            "SELECT pos, market, seq, at, actor, role, location, operation, subject, return_code, request, \
             result, prev_hash, hash FROM audit WHERE $11::text IS NULL AND $12::text IS NULL AND $13::text IS NULL AND ",
            tail!()
        )
    };
    let until = q.until_pos.map_or(i64::MAX, |u| i64::try_from(u).unwrap_or(i64::MAX));
    let [s1, s2, s3] = q.subject_params();
    let end = q.subject_prefix.as_deref().map(openmvs_store::AuditQuery::prefix_end);
    pool.rows(
        sql,
        vec![
            p(i64::try_from(q.after_pos).unwrap_or(i64::MAX)),
            p(until),
            p(q.actor.clone()),
            p(q.location.clone()),
            p(q.operation.clone()),
            p(q.from_millis),
            p(q.to_millis),
            p(q.limit as i64),
            p(q.subject_prefix.clone()),
            p(end),
            p(s1),
            p(s2),
            p(s3),
        ],
        |r| openmvs_store::decode::audit(&R(r)),
    )
    .await
}

/// The position of the newest audit record (0 with none).
pub(crate) async fn audit_last_pos(pool: &Pool) -> StoreResult<u64> {
    let pos = pool.row("SELECT COALESCE(MAX(pos), 0)::bigint FROM audit", vec![], |r| R(r).int(0)).await?;
    Ok(pos.and_then(|p| u64::try_from(p).ok()).unwrap_or(0))
}
