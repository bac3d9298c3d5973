//! The console's history and incidents (see `openmvs_store::SlaStore` and `IncidentStore`), in
//! the same tables of the national and the hub database.

use openmvs_store::{
    Impact, IncidentFilter, IncidentNote, IncidentRecord, IncidentStatus, NewIncident, SlaNodeDay,
    StoreResult, decode_classes, encode_classes, encode_note, incident_record,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::codec::sql_err;

/// The tables, created by a migration of each database.
pub(crate) const SCHEMA: &str = r#"
-- Each node's service-level figures of each day, replaced as the node writes them again.
CREATE TABLE sla_days (
    scope TEXT NOT NULL,
    day INTEGER NOT NULL,
    node TEXT NOT NULL,
    observed_minutes INTEGER NOT NULL,
    ready_minutes INTEGER NOT NULL,
    figures TEXT NOT NULL,
    PRIMARY KEY (scope, day, node)
);
CREATE INDEX sla_days_by_day ON sla_days (day);
-- Incidents with their timeline (a JSON array); one unresolved incident per scope and rule.
CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    rule TEXT,
    title TEXT NOT NULL,
    impact TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    resolved_at INTEGER,
    notes TEXT NOT NULL
);
CREATE UNIQUE INDEX incidents_open_rule ON incidents (scope, rule) WHERE resolved_at IS NULL AND rule IS NOT NULL;
"#;

pub(crate) fn put_sla(c: &Connection, rows: &[SlaNodeDay]) -> StoreResult<()> {
    let mut s = c
        .prepare_cached(
            "INSERT INTO sla_days (scope, day, node, observed_minutes, ready_minutes, figures) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (scope, day, node) DO UPDATE SET \
             observed_minutes = excluded.observed_minutes, ready_minutes = excluded.ready_minutes, \
             figures = excluded.figures",
        )
        .map_err(sql_err)?;
    for r in rows {
        s.execute(params![
            r.scope,
            r.day,
            r.node,
            r.observed_minutes,
            r.ready_minutes,
            encode_classes(&r.classes)
        ])
        .map_err(sql_err)?;
    }
    Ok(())
}

pub(crate) fn sla_days(c: &Connection, from_day: i64, to_day: i64) -> StoreResult<Vec<SlaNodeDay>> {
    let mut s = c
        .prepare_cached(
            "SELECT scope, day, node, observed_minutes, ready_minutes, figures FROM sla_days \
             WHERE day BETWEEN ?1 AND ?2 ORDER BY scope, day, node",
        )
        .map_err(sql_err)?;
    let mut rows = s.query(params![from_day, to_day]).map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        let figures: String = r.get(5).map_err(sql_err)?;
        out.push(SlaNodeDay {
            scope: r.get(0).map_err(sql_err)?,
            day: r.get(1).map_err(sql_err)?,
            node: r.get(2).map_err(sql_err)?,
            observed_minutes: r.get(3).map_err(sql_err)?,
            ready_minutes: r.get(4).map_err(sql_err)?,
            classes: decode_classes(&figures)?,
        });
    }
    Ok(out)
}

fn record(r: &Row) -> StoreResult<IncidentRecord> {
    let g = |i| -> StoreResult<String> { r.get(i).map_err(sql_err) };
    incident_record(
        r.get(0).map_err(sql_err)?,
        g(1)?,
        r.get(2).map_err(sql_err)?,
        g(3)?,
        &g(4)?,
        &g(5)?,
        r.get(6).map_err(sql_err)?,
        r.get(7).map_err(sql_err)?,
        &g(8)?,
    )
}

pub(crate) fn incident(c: &Connection, id: u64) -> StoreResult<Option<IncidentRecord>> {
    let mut s = c
        .prepare_cached(
            "SELECT id, scope, rule, title, impact, status, opened_at, resolved_at, notes FROM incidents WHERE id = ?1",
        )
        .map_err(sql_err)?;
    let mut rows = s.query(params![i64::try_from(id).unwrap_or(i64::MAX)]).map_err(sql_err)?;
    rows.next().map_err(sql_err)?.map(record).transpose()
}

pub(crate) fn open_incident(c: &Connection, new: &NewIncident) -> StoreResult<(IncidentRecord, bool)> {
    let resolved = (new.note.status == IncidentStatus::Resolved).then_some(new.note.at.unix_millis());
    let id: Option<i64> = c
        .prepare_cached(
            "INSERT INTO incidents (scope, rule, title, impact, status, opened_at, resolved_at, notes) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING RETURNING id",
        )
        .map_err(sql_err)?
        .query_row(
            params![
                new.scope,
                new.rule,
                new.title,
                new.impact.as_str(),
                new.note.status.as_str(),
                new.note.at.unix_millis(),
                resolved,
                format!("[{}]", encode_note(&new.note))
            ],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_err)?;
    if let Some(id) = id {
        let rec = incident(c, id as u64)?
            .ok_or_else(|| openmvs_store::StoreError::Corrupt("an incident written is not there".into()))?;
        return Ok((rec, true));
    }
    let mut s = c
        .prepare_cached(
            "SELECT id, scope, rule, title, impact, status, opened_at, resolved_at, notes FROM incidents \
             WHERE scope = ?1 AND rule = ?2 AND resolved_at IS NULL",
        )
        .map_err(sql_err)?;
    let mut rows = s.query(params![new.scope, new.rule]).map_err(sql_err)?;
    let rec = rows.next().map_err(sql_err)?.map(record).transpose()?;
    Ok((
        rec.ok_or_else(|| openmvs_store::StoreError::Corrupt("an incident written is not there".into()))?,
        false,
    ))
}

pub(crate) fn note_incident(
    c: &Connection,
    id: u64,
    note: &IncidentNote,
    impact: Option<Impact>,
) -> StoreResult<Option<IncidentRecord>> {
    let n = c
        .prepare_cached(
            "UPDATE incidents SET notes = json_insert(notes, '$[#]', json(?2)), status = ?3, \
             resolved_at = CASE WHEN ?3 = 'resolved' THEN ?4 ELSE NULL END, impact = COALESCE(?5, impact) \
             WHERE id = ?1 AND resolved_at IS NULL",
        )
        .map_err(sql_err)?
        .execute(params![
            i64::try_from(id).unwrap_or(i64::MAX),
            encode_note(note),
            note.status.as_str(),
            note.at.unix_millis(),
            impact.map(Impact::as_str)
        ])
        .map_err(sql_err)?;
    if n == 0 { Ok(None) } else { incident(c, id) }
}

pub(crate) fn incidents(c: &Connection, f: &IncidentFilter) -> StoreResult<Vec<IncidentRecord>> {
    let mut s = c
        .prepare_cached(
            "SELECT id, scope, rule, title, impact, status, opened_at, resolved_at, notes FROM incidents \
             WHERE id < ?1 AND (?2 = 0 OR resolved_at IS NULL) ORDER BY id DESC LIMIT ?3",
        )
        .map_err(sql_err)?;
    let before = f.before_id.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let mut rows = s.query(params![before, f.open_only, f.limit() as i64]).map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        out.push(record(r)?);
    }
    Ok(out)
}

/// Implements the console's traits for an engine whose `engine` field runs reads and writes.
macro_rules! sqlite_console {
    ($store:ty) => {
        impl openmvs_store::SlaStore for $store {
            fn put_sla(
                &self,
                rows: Vec<openmvs_store::SlaNodeDay>,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<()>> {
                self.engine.exec(move |c| $crate::console::put_sla(c, &rows))
            }
            fn sla_days(
                &self,
                from_day: i64,
                to_day: i64,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Vec<openmvs_store::SlaNodeDay>>> {
                self.engine.read(move |c| $crate::console::sla_days(c, from_day, to_day))
            }
        }
        impl openmvs_store::IncidentStore for $store {
            fn open_incident(
                &self,
                new: openmvs_store::NewIncident,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<(openmvs_store::IncidentRecord, bool)>> {
                self.engine.exec(move |c| $crate::console::open_incident(c, &new))
            }
            fn note_incident(
                &self,
                id: u64,
                note: openmvs_store::IncidentNote,
                impact: Option<openmvs_store::Impact>,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Option<openmvs_store::IncidentRecord>>> {
                self.engine.exec(move |c| $crate::console::note_incident(c, id, &note, impact))
            }
            fn incident(
                &self,
                id: u64,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Option<openmvs_store::IncidentRecord>>> {
                self.engine.read(move |c| $crate::console::incident(c, id))
            }
            fn incidents(
                &self,
                filter: openmvs_store::IncidentFilter,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Vec<openmvs_store::IncidentRecord>>> {
                self.engine.read(move |c| $crate::console::incidents(c, &filter))
            }
        }
    };
}
pub(crate) use sqlite_console;

/// The audit search of both databases (see `openmvs_store::AuditStore::audit_search`): by the
/// subject index when the query names subjects, else in commit order.
pub(crate) fn audit_search(
    c: &Connection,
    q: &openmvs_store::AuditQuery,
) -> StoreResult<Vec<(u64, openmvs_audit::Sealed)>> {
    use openmvs_store::AuditQuery;
    const TAIL: &str = "pos > ?1 AND pos <= ?2 AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR location = ?4) \
        AND (?5 IS NULL OR operation = ?5) AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7) \
        AND (?9 IS NULL OR (subject >= ?9 AND subject < ?10)) ORDER BY pos LIMIT ?8";
    let by_subject = !q.subjects.is_empty();
    let sql = if by_subject {
        format!(
            "SELECT {} FROM audit WHERE subject IN (?11, ?12, ?13) AND {TAIL}",
            openmvs_store::decode::AUDIT_COLUMNS
        )
    } else {
        format!(
            "SELECT {} FROM audit WHERE ?11 IS NULL AND ?12 IS NULL AND ?13 IS NULL AND {TAIL}",
            openmvs_store::decode::AUDIT_COLUMNS
        )
    };
    let mut s = c.prepare_cached(&sql).map_err(sql_err)?;
    let until = q.until_pos.map_or(i64::MAX, |u| i64::try_from(u).unwrap_or(i64::MAX));
    let [s1, s2, s3] = q.subject_params();
    let mut rows = s
        .query(params![
            i64::try_from(q.after_pos).unwrap_or(i64::MAX),
            until,
            q.actor,
            q.location,
            q.operation,
            q.from_millis,
            q.to_millis,
            q.limit as i64,
            q.subject_prefix,
            q.subject_prefix.as_deref().map(AuditQuery::prefix_end),
            s1,
            s2,
            s3
        ])
        .map_err(sql_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_err)? {
        out.push(crate::codec::audit(r)?);
    }
    Ok(out)
}

/// The position of the newest audit record (0 with none).
pub(crate) fn audit_last_pos(c: &Connection) -> StoreResult<u64> {
    let pos: i64 =
        c.query_row("SELECT COALESCE(MAX(pos), 0) FROM audit", [], |r| r.get(0)).map_err(sql_err)?;
    Ok(u64::try_from(pos).unwrap_or(0))
}
