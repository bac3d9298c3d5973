//! How the group-committing writer ([`crate::writer`]) applies a [`HubUnitOfWork`], and the
//! delivery of an outbox message, which at the hub also counts a serial chunk's acknowledgement.

use openmvs_core::ids::MarketCode;
use openmvs_store::commit::changed;
use openmvs_store::hub::*;
use openmvs_store::*;
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{market_data_json, markets_text};
use crate::codec::sql_err;
use crate::writer::{Unit, write_heartbeat};

impl Unit for HubUnitOfWork {
    fn apply(&self, c: &Connection, now: i64) -> StoreResult<HubCommitted> {
        apply(c, self, now)
    }
}

fn exists(what: String) -> StoreError {
    StoreError::Conflict(Conflict::Exists(what))
}

/// Runs a cached statement once and returns how many rows it changed.
fn run(c: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<usize> {
    c.prepare_cached(sql).and_then(|mut s| s.execute(p)).map_err(sql_err)
}

/// Applies one unit of work on the open transaction, in the order of its fields, so that a unit
/// may create an upload and progress it, or store a version and point its product at it.
fn apply(c: &Connection, uow: &HubUnitOfWork, now: i64) -> StoreResult<HubCommitted> {
    let mut out = HubCommitted::default();
    if let Some(id) = &uow.inbox {
        let n = run(
            c,
            "INSERT INTO inbox (message_id, applied_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![id.as_str(), now],
        )?;
        changed(n as u64, || Conflict::InboxMessage)?;
    }
    for o in &uow.new_obps {
        let n = run(
            c,
            "INSERT INTO obps (id, name, created_at, revoked_at, callback_url) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT DO NOTHING",
            params![
                o.id.as_str(),
                o.name,
                o.created_at.unix_millis(),
                o.revoked_at.map(|t| t.unix_millis()),
                o.callback_url
            ],
        )?;
        changed(n as u64, || Conflict::Exists(format!("OBP {}", o.id)))?;
    }
    for change in &uow.obp_changes {
        let (obp, n) = match change {
            ObpChange::Callback { obp, url } => {
                (obp, run(c, "UPDATE obps SET callback_url = ?2 WHERE id = ?1", params![obp.as_str(), url])?)
            }
            // A revocation is irreversible: a second one keeps the first instant.
            ObpChange::Revoke { obp, at } => (
                obp,
                run(
                    c,
                    "UPDATE obps SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                    params![obp.as_str(), at.unix_millis()],
                )?,
            ),
        };
        if n == 0 {
            // OBPs are never removed, so this is no race the caller could win by retrying.
            return Err(StoreError::Corrupt(format!("a change names OBP {obp}, which does not exist")));
        }
    }
    for v in &uow.product_versions {
        let p = &v.master;
        let n = run(
            c,
            "INSERT INTO product_versions (product_code, version, name, common_name, form, strength, pack_type, \
             pack_size, market_data, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT DO NOTHING",
            params![
                p.product_code.as_str(),
                v.version,
                p.name,
                p.common_name,
                p.form,
                p.strength,
                p.pack_type,
                p.pack_size,
                market_data_json(&p.markets),
                v.created_at.unix_millis()
            ],
        )?;
        changed(n as u64, || Conflict::Exists(format!("product version {}/{}", p.product_code, v.version)))?;
    }
    for w in &uow.products {
        let p = &w.product;
        match w.expected_version {
            None => {
                let n = run(
                    c,
                    "INSERT INTO products (product_code, scheme, owner, current_version, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![
                        p.product_code.as_str(),
                        p.product_code.scheme().as_str(),
                        p.owner.as_str(),
                        p.current_version,
                        p.created_at.unix_millis()
                    ],
                )?;
                changed(n as u64, || Conflict::Exists(format!("product {}", p.product_code)))?;
            }
            Some(expected) => {
                // The owner is not written: the first OBP to upload the product keeps it.
                let n = run(
                    c,
                    "UPDATE products SET current_version = ?3 WHERE product_code = ?1 AND current_version = ?2",
                    params![p.product_code.as_str(), expected, p.current_version],
                )?;
                changed(n as u64, || {
                    Conflict::Exists(format!("a newer version of product {}", p.product_code))
                })?;
            }
        }
        // Withdrawals are only ever added, so a write decided before a withdrawal cannot undo it.
        for m in &p.withdrawn {
            run(
                c,
                "INSERT INTO product_withdrawals (product_code, market) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![p.product_code.as_str(), m.as_str()],
            )?;
        }
    }
    for b in &uow.batches {
        run(
            c,
            "INSERT INTO batches (product_code, batch, product_version, expiry, expiry_year, markets) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (product_code, batch) DO UPDATE SET \
             product_version = excluded.product_version, expiry = excluded.expiry, \
             expiry_year = excluded.expiry_year, markets = excluded.markets",
            params![
                b.product_code.as_str(),
                b.batch.as_str(),
                b.product_version,
                b.expiry.as_str(),
                b.expiry.date().year(),
                markets_text(&b.markets)
            ],
        )?;
        // Recalls, like withdrawals, are only ever added.
        for m in &b.recalled {
            run(
                c,
                "INSERT INTO batch_recalls (product_code, batch, market) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![b.product_code.as_str(), b.batch.as_str(), m.as_str()],
            )?;
        }
    }
    for group in &uow.serials {
        let mut s = c
            .prepare_cached(
                "INSERT INTO serial_digests (product_code, digest) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )
            .map_err(sql_err)?;
        let mut present = Vec::new();
        for (i, d) in group.digests.iter().enumerate() {
            if s.execute(params![group.product_code.as_str(), d.as_bytes()]).map_err(sql_err)? == 0 {
                if group.on_duplicate == OnDuplicate::Refuse {
                    return Err(exists(format!("serial digest {i} of product {}", group.product_code)));
                }
                present.push(i);
            }
        }
        out.duplicate_serials.push(present);
    }
    if let Some(u) = &uow.new_upload {
        let n = run(
            c,
            "INSERT INTO uploads (id, obp, scheme, product_code, batch, status, received, rejected, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'RECEIVED', 0, 0, ?6) ON CONFLICT DO NOTHING",
            params![
                u.id.as_str(),
                u.obp.as_str(),
                u.product_code.scheme().as_str(),
                u.product_code.as_str(),
                u.batch.as_str(),
                u.created_at.unix_millis()
            ],
        )?;
        changed(n as u64, || Conflict::Exists(format!("upload {}", u.id)))?;
        for m in &u.markets {
            run(
                c,
                "INSERT INTO upload_markets (upload_id, market, sent, acked) VALUES (?1, ?2, 0, 0) \
                 ON CONFLICT DO NOTHING",
                params![u.id.as_str(), m.as_str()],
            )?;
        }
    }
    if let Some(p) = &uow.upload_progress {
        apply_progress(c, p, now)?;
    }
    for a in &uow.alerts {
        let n = run(
            c,
            "INSERT INTO alerts (id, obp, market, source_alert_id, product_code, alert, created_at, status, \
             classification, comment, thread, version) VALUES (?1, ?2, ?3, ?1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT DO NOTHING",
            params![
                a.id.as_str(),
                a.obp.as_str(),
                a.market.as_str(),
                a.product_code,
                a.alert,
                a.created_at.unix_millis(),
                a.status.as_str(),
                a.classification.map(|c| c.as_str()),
                a.comment,
                decode::thread_text(&a.thread),
                a.version as i64
            ],
        )?;
        // A conflict rather than a skip: the unit that forwards an alert also holds the OBP's
        // callback message, which must not go out a second time.
        changed(n as u64, || Conflict::Exists(format!("alert {}", a.id)))?;
    }
    for u in &uow.alert_updates {
        let n = run(
            c,
            "UPDATE alerts SET status = ?2, classification = ?3, comment = COALESCE(?4, comment), \
             thread = ?5, version = version + 1 WHERE id = ?1 AND version = ?6",
            params![
                u.id.as_str(),
                u.status.as_str(),
                u.classification.map(|c| c.as_str()),
                u.comment,
                decode::thread_text(&u.thread),
                u.expected_version as i64
            ],
        )?;
        changed(n as u64, || Conflict::AlertStatus)?;
    }
    for m in &uow.outbox {
        insert_outbox(c, m, None, now)?;
    }
    if let Some(h) = &uow.heartbeat {
        write_heartbeat(c, h)?;
    }
    Ok(out)
}

fn apply_progress(c: &Connection, p: &UploadProgress, now: i64) -> StoreResult<()> {
    let n = run(
        c,
        "UPDATE uploads SET received = received + ?2, rejected = rejected + ?3 WHERE id = ?1 AND status = 'RECEIVED'",
        params![p.id.as_str(), p.received as i64, p.rejections.len() as i64],
    )?;
    changed(n as u64, || Conflict::Exists(format!("a later state of upload {}", p.id)))?;
    for r in &p.rejections {
        let n = run(
            c,
            "INSERT INTO upload_rejections (upload_id, line, serial, reason) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT DO NOTHING",
            params![p.id.as_str(), r.line as i64, r.serial, r.reason],
        )?;
        changed(n as u64, || Conflict::Exists(format!("a rejection of line {} of upload {}", r.line, p.id)))?;
    }
    for m in &p.chunks {
        // Counted per market: a chunk to anything else could never be acknowledged by one.
        let market = MarketCode::new(&m.destination).map_err(|e| {
            StoreError::Corrupt(format!("chunk {} of upload {} is not for a market: {e}", m.message_id, p.id))
        })?;
        insert_outbox(c, m, Some(p.id.as_str()), now)?;
        run(
            c,
            "INSERT INTO upload_markets (upload_id, market, sent, acked) VALUES (?1, ?2, 1, 0) \
             ON CONFLICT DO UPDATE SET sent = sent + 1",
            params![p.id.as_str(), market.as_str()],
        )?;
    }
    if let Some(outcome) = p.outcome {
        let status = match outcome {
            UploadOutcome::Validated => UploadStatus::Validated,
            UploadOutcome::Failed => UploadStatus::Failed,
        };
        run(c, "UPDATE uploads SET status = ?2 WHERE id = ?1", params![p.id.as_str(), status.as_str()])?;
        mark_distributed(c, p.id.as_str())?;
    }
    Ok(())
}

fn insert_outbox(c: &Connection, m: &OutboxMessage, upload: Option<&str>, now: i64) -> StoreResult<()> {
    let n = run(
        c,
        "INSERT INTO outbox (message_id, destination, kind, ordering_key, payload, created_at, next_attempt_at, \
         upload_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7) ON CONFLICT (message_id) DO NOTHING",
        params![m.message_id.as_str(), m.destination, m.kind, m.ordering_key, m.payload, now, upload],
    )?;
    changed(n as u64, || Conflict::Exists(format!("outbox message {}", m.message_id)))?;
    Ok(())
}

/// A validated upload is DISTRIBUTED once every market acknowledged every chunk sent to it.
fn mark_distributed(c: &Connection, upload: &str) -> StoreResult<()> {
    run(
        c,
        "UPDATE uploads SET status = 'DISTRIBUTED' WHERE id = ?1 AND status = 'VALIDATED' \
         AND NOT EXISTS (SELECT 1 FROM upload_markets WHERE upload_id = ?1 AND acked < sent)",
        params![upload],
    )?;
    Ok(())
}

/// Deletes a delivered message, and with it the serials of a chunk; a chunk's acknowledgement is
/// counted in the same write, so an upload can never be DISTRIBUTED with its serials still here,
/// nor keep them once it is.
pub fn delivered(c: &Connection, seq: u64) -> StoreResult<()> {
    let link: Option<(Option<String>, String)> = c
        .prepare_cached("DELETE FROM outbox WHERE seq = ?1 RETURNING upload_id, destination")
        .and_then(|mut s| s.query_row(params![seq as i64], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(sql_err)?;
    if let Some((Some(upload), market)) = link {
        run(
            c,
            "UPDATE upload_markets SET acked = acked + 1 WHERE upload_id = ?1 AND market = ?2",
            params![upload, market],
        )?;
        mark_distributed(c, &upload)?;
    }
    Ok(())
}
