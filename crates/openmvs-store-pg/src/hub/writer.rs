//! How the group-committing writer ([`crate::writer`]) applies a [`HubUnitOfWork`].

use std::collections::HashSet;
use std::future::Future;

use openmvs_core::ids::MarketCode;
use openmvs_store::commit::changed;
use openmvs_store::decode_hub::markets_text;
use openmvs_store::hub::*;
use openmvs_store::*;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::codec::market_data_json;
use crate::writer::{Conn, Fail, Unit, conflict};

/// Digest groups of at least this many are streamed in with COPY; smaller ones travel as one
/// array parameter, in one round trip.
pub const COPY_FROM: usize = 64;

impl Unit for HubUnitOfWork {
    // An upload chunk's serial digests are streamed in with COPY into this session's staging table.
    const SESSION: &'static str =
        "CREATE TEMP TABLE IF NOT EXISTS digest_ingest (digest BYTEA NOT NULL) ON COMMIT DELETE ROWS";

    fn apply<'a>(
        &'a self,
        c: &'a Conn,
        now: i64,
    ) -> impl Future<Output = Result<HubCommitted, Fail>> + Send + 'a {
        apply(c, self, now)
    }
}

fn refused(what: String) -> Fail {
    conflict(Conflict::Exists(what))
}

/// Applies one unit of work on the open transaction (audit records excepted: they are sealed after
/// every unit of the group), in the order of its fields, so that a unit may create an upload and
/// progress it, or store a version and point its product at it.
async fn apply(c: &Conn, uow: &HubUnitOfWork, now: i64) -> Result<HubCommitted, Fail> {
    let mut out = HubCommitted::default();
    if let Some(id) = &uow.inbox {
        let q = c
            .stmt("INSERT INTO inbox (message_id, applied_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .await?;
        changed(c.client.execute(&q, &[&id.as_str(), &now]).await?, || Conflict::InboxMessage)?;
    }
    for o in &uow.new_obps {
        let q = c
            .stmt(
                "INSERT INTO obps (id, name, created_at, revoked_at, callback_url) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let revoked = o.revoked_at.map(|t| t.unix_millis());
        let n = c
            .client
            .execute(&q, &[&o.id.as_str(), &o.name, &o.created_at.unix_millis(), &revoked, &o.callback_url])
            .await?;
        changed(n, || Conflict::Exists(format!("OBP {}", o.id)))?;
    }
    for change in &uow.obp_changes {
        let (obp, n) = match change {
            ObpChange::Callback { obp, url } => {
                let q = c.stmt("UPDATE obps SET callback_url = $2 WHERE id = $1").await?;
                (obp, c.client.execute(&q, &[&obp.as_str(), url]).await?)
            }
            // A revocation is irreversible: a second one keeps the first instant.
            ObpChange::Revoke { obp, at } => {
                let q = c.stmt("UPDATE obps SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1").await?;
                (obp, c.client.execute(&q, &[&obp.as_str(), &at.unix_millis()]).await?)
            }
        };
        if n == 0 {
            // OBPs are never removed, so this is no race the caller could win by retrying.
            return Err(Fail::Store(StoreError::Corrupt(format!(
                "a change names OBP {obp}, which does not exist"
            ))));
        }
    }
    for v in &uow.product_versions {
        let p = &v.master;
        let q = c
            .stmt(
                "INSERT INTO product_versions (product_code, version, name, common_name, form, strength, pack_type, \
                 pack_size, market_data, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let version = i64::from(v.version);
        let n = c
            .client
            .execute(
                &q,
                &[
                    &p.product_code.as_str(),
                    &version,
                    &p.name,
                    &p.common_name,
                    &p.form,
                    &p.strength,
                    &p.pack_type,
                    &p.pack_size,
                    &market_data_json(&p.markets),
                    &v.created_at.unix_millis(),
                ],
            )
            .await?;
        changed(n, || Conflict::Exists(format!("product version {}/{}", p.product_code, v.version)))?;
    }
    for w in &uow.products {
        let p = &w.product;
        let current = i64::from(p.current_version);
        match w.expected_version {
            None => {
                let q = c
                    .stmt(
                        "INSERT INTO products (product_code, scheme, owner, current_version, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .await?;
                let n = c
                    .client
                    .execute(
                        &q,
                        &[
                            &p.product_code.as_str(),
                            &p.product_code.scheme().as_str(),
                            &p.owner.as_str(),
                            &current,
                            &p.created_at.unix_millis(),
                        ],
                    )
                    .await?;
                changed(n, || Conflict::Exists(format!("product {}", p.product_code)))?;
            }
            Some(expected) => {
                // The owner is not written: the first OBP to upload the product keeps it.
                let q = c
                    .stmt(
                        "UPDATE products SET current_version = $3 WHERE product_code = $1 AND current_version = $2",
                    )
                    .await?;
                let expected = i64::from(expected);
                changed(
                    c.client.execute(&q, &[&p.product_code.as_str(), &expected, &current]).await?,
                    || Conflict::Exists(format!("a newer version of product {}", p.product_code)),
                )?;
            }
        }
        // Withdrawals are only ever added, so a write decided before a withdrawal cannot undo it.
        if !p.withdrawn.is_empty() {
            let q = c
                .stmt(
                    "INSERT INTO product_withdrawals (product_code, market) \
                     SELECT $1, m FROM UNNEST($2::text[]) AS t(m) ON CONFLICT DO NOTHING",
                )
                .await?;
            let markets: Vec<&str> = p.withdrawn.iter().map(MarketCode::as_str).collect();
            c.client.execute(&q, &[&p.product_code.as_str(), &markets]).await?;
        }
    }
    for b in &uow.batches {
        let q = c
            .stmt(
                "INSERT INTO batches (product_code, batch, product_version, expiry, expiry_year, markets) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (product_code, batch) DO UPDATE SET \
                 product_version = EXCLUDED.product_version, expiry = EXCLUDED.expiry, \
                 expiry_year = EXCLUDED.expiry_year, markets = EXCLUDED.markets",
            )
            .await?;
        let version = i64::from(b.product_version);
        let year: i32 = b.expiry.date().year();
        c.client
            .execute(
                &q,
                &[
                    &b.product_code.as_str(),
                    &b.batch.as_str(),
                    &version,
                    &b.expiry.as_str(),
                    &year,
                    &markets_text(&b.markets),
                ],
            )
            .await?;
        // Recalls, like withdrawals, are only ever added.
        if !b.recalled.is_empty() {
            let q = c
                .stmt(
                    "INSERT INTO batch_recalls (product_code, batch, market) \
                     SELECT $1, $2, m FROM UNNEST($3::text[]) AS t(m) ON CONFLICT DO NOTHING",
                )
                .await?;
            let markets: Vec<&str> = b.recalled.iter().map(MarketCode::as_str).collect();
            c.client.execute(&q, &[&b.product_code.as_str(), &b.batch.as_str(), &markets]).await?;
        }
    }
    for group in &uow.serials {
        out.duplicate_serials.push(insert_digests(c, group).await?);
    }
    if let Some(u) = &uow.new_upload {
        let q = c
            .stmt(
                "INSERT INTO uploads (id, obp, scheme, product_code, batch, status, received, rejected, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 'RECEIVED', 0, 0, $6) ON CONFLICT DO NOTHING",
            )
            .await?;
        let n = c
            .client
            .execute(
                &q,
                &[
                    &u.id.as_str(),
                    &u.obp.as_str(),
                    &u.product_code.scheme().as_str(),
                    &u.product_code.as_str(),
                    &u.batch.as_str(),
                    &u.created_at.unix_millis(),
                ],
            )
            .await?;
        changed(n, || Conflict::Exists(format!("upload {}", u.id)))?;
        let q = c
            .stmt(
                "INSERT INTO upload_markets (upload_id, market, sent, acked) \
                 SELECT $1, m, 0, 0 FROM UNNEST($2::text[]) AS t(m) ON CONFLICT DO NOTHING",
            )
            .await?;
        let markets: Vec<&str> = u.markets.iter().map(MarketCode::as_str).collect();
        c.client.execute(&q, &[&u.id.as_str(), &markets]).await?;
    }
    if let Some(p) = &uow.upload_progress {
        apply_progress(c, p, now).await?;
    }
    for a in &uow.alerts {
        let q = c
            .stmt(
                "INSERT INTO alerts (id, obp, market, source_alert_id, product_code, alert, created_at, status, \
                 classification, comment, thread, version) VALUES ($1, $2, $3, $1, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let n = c
            .client
            .execute(
                &q,
                &[
                    &a.id.as_str(),
                    &a.obp.as_str(),
                    &a.market.as_str(),
                    &a.product_code,
                    &a.alert,
                    &a.created_at.unix_millis(),
                    &a.status.as_str(),
                    &a.classification.map(|c| c.as_str()),
                    &a.comment,
                    &decode::thread_text(&a.thread),
                    &(a.version as i64),
                ],
            )
            .await?;
        // A conflict rather than a skip: the unit that forwards an alert also holds the OBP's
        // callback message, which must not go out a second time.
        changed(n, || Conflict::Exists(format!("alert {}", a.id)))?;
    }
    for u in &uow.alert_updates {
        let q = c
            .stmt(
                "UPDATE alerts SET status = $2, classification = $3, comment = COALESCE($4, comment), \
                 thread = $5, version = version + 1 WHERE id = $1 AND version = $6",
            )
            .await?;
        let n = c
            .client
            .execute(
                &q,
                &[
                    &u.id.as_str(),
                    &u.status.as_str(),
                    &u.classification.map(|c| c.as_str()),
                    &u.comment,
                    &decode::thread_text(&u.thread),
                    &(u.expected_version as i64),
                ],
            )
            .await?;
        changed(n, || Conflict::AlertStatus)?;
    }
    for m in &uow.outbox {
        insert_outbox(c, m, None, now).await?;
    }
    if let Some(h) = &uow.heartbeat {
        let q = c
            .stmt(
                "INSERT INTO heartbeats (node_id, at, build_schema) VALUES ($1, $2, $3) \
                 ON CONFLICT (node_id) DO UPDATE SET at = EXCLUDED.at, build_schema = EXCLUDED.build_schema",
            )
            .await?;
        let build = super::schema::LATEST;
        c.client.execute(&q, &[&h.node_id.as_str(), &h.at.unix_millis(), &build]).await?;
        // Rows of nodes gone for a day are dropped, so restarts do not accumulate them.
        let q = c.stmt("DELETE FROM heartbeats WHERE at < $1").await?;
        c.client.execute(&q, &[&(h.at.unix_millis() - 86_400_000)]).await?;
    }
    Ok(out)
}

/// Inserts the digests of one group that are absent; returns the positions (ascending) of those
/// present already, before the unit or earlier in it. With [`OnDuplicate::Refuse`], any present
/// digest refuses the unit (its savepoint then takes back the ones inserted, and the staged rows).
///
/// Repeats within the group are found here; the rest go to the database once each, in digest
/// order, so that two nodes inserting overlapping digests take their locks in one order.
async fn insert_digests(c: &Conn, g: &SerialDigests) -> Result<Vec<usize>, Fail> {
    let refuse = g.on_duplicate == OnDuplicate::Refuse;
    let mut seen = HashSet::with_capacity(g.digests.len());
    let mut distinct: Vec<&[u8]> = Vec::with_capacity(g.digests.len());
    for (i, d) in g.digests.iter().enumerate() {
        if seen.insert(d.as_bytes()) {
            distinct.push(d.as_bytes());
        } else if refuse {
            return Err(refused(format!("serial digest {i} of product {}", g.product_code)));
        }
    }
    let streamed = distinct.len() >= COPY_FROM;
    if streamed {
        let sink = c.client.copy_in("COPY digest_ingest (digest) FROM STDIN BINARY").await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::BYTEA]);
        let mut writer = std::pin::pin!(writer);
        for d in &distinct {
            writer.as_mut().write(&[d]).await?;
        }
        writer.as_mut().finish().await?;
    }
    let q = c
        .stmt(match (streamed, refuse) {
            (true, true) => {
                "INSERT INTO serial_digests (product_code, digest) \
                 SELECT $1, digest FROM digest_ingest ORDER BY digest ON CONFLICT DO NOTHING"
            }
            (true, false) => {
                "INSERT INTO serial_digests (product_code, digest) \
                 SELECT $1, digest FROM digest_ingest ORDER BY digest ON CONFLICT DO NOTHING RETURNING digest"
            }
            (false, true) => {
                "INSERT INTO serial_digests (product_code, digest) \
                 SELECT $1, d FROM UNNEST($2::bytea[]) AS t(d) ORDER BY d ON CONFLICT DO NOTHING"
            }
            (false, false) => {
                "INSERT INTO serial_digests (product_code, digest) \
                 SELECT $1, d FROM UNNEST($2::bytea[]) AS t(d) ORDER BY d ON CONFLICT DO NOTHING RETURNING digest"
            }
        })
        .await?;
    let pc = g.product_code.as_str();
    let params: Vec<&(dyn ToSql + Sync)> = if streamed { vec![&pc] } else { vec![&pc, &distinct] };
    let present = if refuse {
        if c.client.execute(&q, &params).await? < distinct.len() as u64 {
            return Err(refused(format!("a serial digest of product {}", g.product_code)));
        }
        Vec::new()
    } else {
        let rows = c.client.query(&q, &params).await?;
        let inserted: HashSet<&[u8]> = rows.iter().map(|r| r.get::<_, &[u8]>(0)).collect();
        // New: the first occurrence of a digest this statement inserted; present: every other.
        let mut first = HashSet::with_capacity(inserted.len());
        g.digests
            .iter()
            .enumerate()
            .filter(|(_, d)| !(inserted.contains(d.as_bytes()) && first.insert(d.as_bytes())))
            .map(|(i, _)| i)
            .collect()
    };
    if streamed {
        c.client.batch_execute("TRUNCATE digest_ingest").await?;
    }
    Ok(present)
}

async fn apply_progress(c: &Conn, p: &UploadProgress, now: i64) -> Result<(), Fail> {
    // Takes the upload's row lock first: acknowledgements of its chunks wait for this unit.
    let q = c
        .stmt(
            "UPDATE uploads SET received = received + $2, rejected = rejected + $3 \
             WHERE id = $1 AND status = 'RECEIVED'",
        )
        .await?;
    let (received, rejected) = (p.received as i64, p.rejections.len() as i64);
    changed(c.client.execute(&q, &[&p.id.as_str(), &received, &rejected]).await?, || {
        Conflict::Exists(format!("a later state of upload {}", p.id))
    })?;
    if !p.rejections.is_empty() {
        let q = c
            .stmt(
                "INSERT INTO upload_rejections (upload_id, line, serial, reason) \
                 SELECT $1, l, s, r FROM UNNEST($2::bigint[], $3::text[], $4::text[]) AS t(l, s, r) \
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let lines: Vec<i64> = p.rejections.iter().map(|r| r.line as i64).collect();
        let serials: Vec<&str> = p.rejections.iter().map(|r| r.serial.as_str()).collect();
        let reasons: Vec<&str> = p.rejections.iter().map(|r| r.reason.as_str()).collect();
        let n = c.client.execute(&q, &[&p.id.as_str(), &lines, &serials, &reasons]).await?;
        if n < lines.len() as u64 {
            return Err(refused(format!("a rejection of a line of upload {}", p.id)));
        }
    }
    for m in &p.chunks {
        // Counted per market: a chunk to anything else could never be acknowledged by one.
        let market = MarketCode::new(&m.destination).map_err(|e| {
            Fail::Store(StoreError::Corrupt(format!(
                "chunk {} of upload {} is not for a market: {e}",
                m.message_id, p.id
            )))
        })?;
        insert_outbox(c, m, Some(p.id.as_str()), now).await?;
        let q = c
            .stmt(
                "INSERT INTO upload_markets (upload_id, market, sent, acked) VALUES ($1, $2, 1, 0) \
                 ON CONFLICT (upload_id, market) DO UPDATE SET sent = upload_markets.sent + 1",
            )
            .await?;
        c.client.execute(&q, &[&p.id.as_str(), &market.as_str()]).await?;
    }
    if let Some(outcome) = p.outcome {
        let status = match outcome {
            UploadOutcome::Validated => UploadStatus::Validated,
            UploadOutcome::Failed => UploadStatus::Failed,
        };
        let q = c.stmt("UPDATE uploads SET status = $2 WHERE id = $1").await?;
        c.client.execute(&q, &[&p.id.as_str(), &status.as_str()]).await?;
        // A statement of its own, so it reads every acknowledgement committed before this unit
        // took the upload's lock.
        let q = c
            .stmt(
                "UPDATE uploads SET status = 'DISTRIBUTED' WHERE id = $1 AND status = 'VALIDATED' \
                 AND NOT EXISTS (SELECT 1 FROM upload_markets WHERE upload_id = $1 AND acked < sent)",
            )
            .await?;
        c.client.execute(&q, &[&p.id.as_str()]).await?;
    }
    Ok(())
}

async fn insert_outbox(c: &Conn, m: &OutboxMessage, upload: Option<&str>, now: i64) -> Result<(), Fail> {
    let q = c
        .stmt(
            "INSERT INTO outbox (message_id, destination, kind, ordering_key, payload, created_at, next_attempt_at, \
             upload_id) VALUES ($1, $2, $3, $4, $5, $6, $6, $7) ON CONFLICT (message_id) DO NOTHING",
        )
        .await?;
    let n = c
        .client
        .execute(
            &q,
            &[&m.message_id.as_str(), &m.destination, &m.kind, &m.ordering_key, &m.payload, &now, &upload],
        )
        .await?;
    changed(n, || Conflict::Exists(format!("outbox message {}", m.message_id)))?;
    Ok(())
}
