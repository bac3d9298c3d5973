//! What the national system holds after the burst, read from its database: whether every
//! replayed operation was applied exactly once and in order (its client's audit records of each
//! pack, against the backlog), and which alerts were raised, against those the backlog must raise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;

use super::plan::Pack;

/// The outcome of the checks.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Recorded operations whose pack's audit records are exactly as the backlog says.
    pub(crate) applied_once: u64,
    /// Packs whose audit records are not (each a description, the first few).
    pub(crate) wrong: Vec<String>,
    /// Packs not as the backlog says.
    pub(crate) wrong_packs: u64,
    /// Requests of the replay sent again and answered from the idempotency record (a verify
    /// answered before its dispense was shed, or an answer lost to a timeout).
    pub(crate) answered_again: u64,
    /// Alerts the backlog must raise.
    pub(crate) alerts_expected: u64,
    /// Alerts raised on the backlog's packs.
    pub(crate) alerts_by_replay: u64,
    /// Of them, those the backlog must raise.
    pub(crate) alerts_true: u64,
    /// Alerts on the backlog's packs the backlog must not raise.
    pub(crate) false_alerts_replay: u64,
    /// Alerts on any other pack (the live traffic's packs are all good).
    pub(crate) false_alerts_other: u64,
}

/// Reads the database at `db` (the national system may still be open: SQLite in WAL mode lets
/// a reader in). `backlogs` holds each pharmacy's client id and packs.
pub(crate) fn check(db: &Path, backlogs: &[(String, Vec<Pack>)]) -> anyhow::Result<Applied> {
    let db = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", db.display()))?;
    let mut out = Applied::default();
    // A pack operation's records (not the client's logins). A request sent again with its
    // transaction id and answered from the idempotency record is audited as `<operation>-replay`:
    // answered, not applied again.
    let mut audit = db.prepare(
        "SELECT subject, operation, return_code FROM audit WHERE actor = ?1 AND operation <> 'login' ORDER BY pos",
    )?;
    let mut expected_alerts = BTreeSet::new();
    let mut backlog_serials = BTreeSet::new();
    for (client_id, packs) in backlogs {
        let mut by_pack: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let rows = audit.query_map([client_id], |r| {
            let subject: String = r.get(0)?;
            Ok((subject.rsplit('/').next().unwrap_or_default().to_owned(), r.get(1)?, r.get(2)?))
        })?;
        for row in rows {
            let (serial, op, code): (String, String, String) = row?;
            if op.ends_with("-replay") {
                out.answered_again += 1;
                continue;
            }
            by_pack.entry(serial).or_default().push((op, code));
        }
        for p in packs {
            backlog_serials.insert(p.serial.clone());
            if let Some(code) = p.kind.alert() {
                expected_alerts.insert((p.serial.clone(), code.to_owned()));
            }
            let seen = by_pack.remove(&p.serial).unwrap_or_default();
            let ops: Vec<&str> = seen.iter().map(|(op, _)| op.as_str()).collect();
            let succeeded = !p.kind.all_succeed() || seen.iter().all(|(_, code)| code == "NMVS_SUCCESS");
            if ops == p.kind.audited() && succeeded {
                out.applied_once += p.kind.commands().len() as u64;
            } else {
                out.wrong_packs += 1;
                if out.wrong.len() < 5 {
                    out.wrong.push(format!("{} ({:?}): {seen:?}", p.serial, p.kind));
                }
            }
        }
        // Audit records of the pharmacy's client on packs it never recorded.
        for (serial, seen) in by_pack {
            out.wrong_packs += 1;
            if out.wrong.len() < 5 {
                out.wrong.push(format!("{serial} (not in the backlog): {seen:?}"));
            }
        }
    }
    out.alerts_expected = expected_alerts.len() as u64;
    let alerts = db
        .prepare("SELECT serial, code FROM alerts")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    for alert in alerts {
        if backlog_serials.contains(&alert.0) {
            out.alerts_by_replay += 1;
            if expected_alerts.contains(&alert) {
                out.alerts_true += 1;
            } else {
                out.false_alerts_replay += 1;
            }
        } else {
            out.false_alerts_other += 1;
        }
    }
    Ok(out)
}
