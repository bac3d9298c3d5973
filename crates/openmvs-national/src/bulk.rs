//! Bulk requests: accepted at once (202), processed in the background by one bounded worker in
//! chunks, each chunk one unit of work, results stored and fetched by id. Bulk never asks the hub.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openmvs_core::answer::{BulkAccepted, BulkReport, BulkRowRequest, BulkRowResult, PackAnswer};
use openmvs_core::guessing::is_counted;
use openmvs_core::ids::{BulkId, ClientTrxId, PackIdentifier};
use openmvs_core::pack::{Command, Decision};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Action, access};
use openmvs_store::{BulkJob, BulkProgress, BulkStatus, Conflict, IdempotencyRecord, StoreError, UnitOfWork};
use openmvs_wire::api::{BulkRequest, BulkRow};
use openmvs_wire::kept;
use tokio::sync::watch;

use crate::guessing::{self, Offence};
use crate::packs::{Loaded, audit_result, subject};
use crate::request::{self, PackInput, bytes_hash};
use crate::{Actor, ApiError, National, Record, new_id};

/// How many failing jobs may be waiting out their delay before the worker looks no further.
const MAX_BACKED_OFF: usize = 32;

/// What the bulk worker keeps from one round to the next: the jobs whose chunk failed, with their
/// failures so far and when they may be tried again.
#[derive(Debug, Default)]
pub struct BulkBackoff {
    failing: HashMap<BulkId, (u32, Instant)>,
}

/// At most this many bad rows are listed in a refusal.
const MAX_REPORTED_ROWS: usize = 20;

fn command_of(op: &str) -> Option<Command> {
    Command::parse(op)
}

impl National {
    /// `POST /v1/bulk`: validates every row, stores the job and answers with its id.
    pub async fn submit_bulk(&self, actor: &Actor, body: &BulkRequest) -> Result<BulkAccepted, ApiError> {
        self.submit_labelled_bulk(actor, body, &[]).await
    }

    /// A bulk whose rows carry the submitter's own labels, one per row (the NMVS mixed bulk gives
    /// each item its own transaction id): kept with the job and given back by
    /// [`National::bulk_rows`], and part of what makes a replay the same request. Otherwise
    /// [`National::submit_bulk`].
    pub async fn submit_labelled_bulk(
        &self,
        actor: &Actor,
        body: &BulkRequest,
        labels: &[String],
    ) -> Result<BulkAccepted, ApiError> {
        let now = self.clock.now();
        let checked = self.check_bulk(actor, body).and_then(|(id, rows)| {
            if labels.is_empty() || labels.len() == rows.len() {
                Ok((id, rows))
            } else {
                Err(ApiError::field("labels", format!("{} labels for {} rows", labels.len(), rows.len())))
            }
        });
        let (client_trx_id, rows) = match checked {
            Ok(v) => v,
            Err(e) => return Err(self.refuse(actor, "bulk", "", &bulk_summary(body), e).await),
        };
        // A client (or premises) slowed or refused for serial guessing sends no bulk either.
        let keys = guessing::keys(actor);
        let admission = self.guessing.admit(&keys, now).await;
        if !admission.due.is_empty() {
            self.raise_guessing_alert(actor, &admission.due, now).await;
        }
        if let Some(e) = guessing::refusal(admission.verdict, &self.config.guessing) {
            return Err(self.refuse(actor, "bulk", "", &bulk_summary(body), e).await);
        }
        let mut canonical = serde_json::to_string(&rows).map_err(openmvs_store::unavailable)?;
        if !labels.is_empty() {
            canonical.push_str(&serde_json::to_string(labels).map_err(openmvs_store::unavailable)?);
        }
        let hash = bytes_hash(canonical.as_bytes());
        for _ in 0..4 {
            if let Some(stored) = self.store.idempotency(&actor.client_id, &client_trx_id).await? {
                if stored.request_hash != hash {
                    let e = ApiError::new(ReturnCode::TransactionIdReused)
                        .with("client_trx_id", "was used by this client for a different request");
                    return Err(self.refuse(actor, "bulk", "", &bulk_summary(body), e).await);
                }
                return kept::read_bulk_accepted(&stored.response).map_err(|e| StoreError::Corrupt(e).into());
            }
            let accepted = BulkAccepted { bulk_id: new_id("BLK", now).into() };
            let response = kept::bulk_accepted(&accepted);
            let uow = UnitOfWork {
                new_bulk: Some(BulkJob {
                    id: accepted.bulk_id.clone(),
                    client_id: actor.client_id.clone(),
                    status: BulkStatus::Pending,
                    request: {
                        let mut job = serde_json::json!({
                            "role": actor.role.as_str(),
                            "location": actor.location.as_str(),
                            "rows": rows,
                        });
                        if !labels.is_empty() {
                            job["labels"] = serde_json::json!(labels);
                        }
                        job.to_string()
                    },
                    done_rows: 0,
                    total_rows: rows.len() as u64,
                    created_at: now,
                }),
                idempotency: Some(IdempotencyRecord {
                    client_id: actor.client_id.clone(),
                    client_trx_id: client_trx_id.clone(),
                    request_hash: hash,
                    status: 202,
                    response: response.clone(),
                    created_at: now,
                }),
                audit: vec![self.audit_entry(
                    actor,
                    now,
                    Record {
                        operation: "bulk",
                        subject: accepted.bulk_id.as_str(),
                        return_code: ReturnCode::Success.as_str(),
                        request: serde_json::to_string(&bulk_summary(body)).unwrap_or_default(),
                        result: response,
                    },
                )],
                ..UnitOfWork::default()
            };
            match self.commit(uow).await {
                Ok(_) => {
                    self.bulk_wake.notify_one();
                    return Ok(accepted);
                }
                Err(StoreError::Conflict(Conflict::IdempotencyKey)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("bulk submission kept conflicting"))
    }

    /// Validates a bulk body into its rows; refuses the whole bulk, naming up to 20 bad rows.
    fn check_bulk(&self, actor: &Actor, body: &BulkRequest) -> Result<(ClientTrxId, Vec<BulkRow>), ApiError> {
        let client_trx_id = request::client_trx_id(body.client_trx_id.as_deref())?;
        if !access(actor.role, Action::Bulk, &self.config.policy).is_allowed()
            || actor.market != self.config.market
        {
            return Err(ApiError::new(ReturnCode::Forbidden)
                .with("role", format!("the role {} may not send bulk requests", actor.role)));
        }
        let homogeneous = [&body.operation, &body.scheme, &body.product_code, &body.batch, &body.expiry]
            .iter()
            .any(|f| f.is_some())
            || body.serials.is_some();
        let rows: Vec<BulkRow> = match (&body.transactions, homogeneous) {
            (Some(_), true) => {
                return Err(ApiError::field(
                    "transactions",
                    "give either transactions or operation, scheme, product_code, batch, expiry and serials",
                ));
            }
            (Some(t), false) => t.clone(),
            (None, true) => {
                let need = |name: &str, v: &Option<String>| {
                    v.clone().ok_or_else(|| ApiError::field(name, "is required in a homogeneous bulk"))
                };
                let (op, scheme, pc, batch, expiry) = (
                    need("operation", &body.operation)?,
                    need("scheme", &body.scheme)?,
                    need("product_code", &body.product_code)?,
                    need("batch", &body.batch)?,
                    need("expiry", &body.expiry)?,
                );
                let serials =
                    body.serials.as_ref().ok_or_else(|| ApiError::field("serials", "is required"))?;
                serials
                    .iter()
                    .map(|s| BulkRow {
                        operation: op.clone(),
                        scheme: scheme.clone(),
                        product_code: pc.clone(),
                        serial: s.clone(),
                        batch: batch.clone(),
                        expiry: expiry.clone(),
                    })
                    .collect()
            }
            (None, false) => {
                return Err(ApiError::field("transactions", "is required (or the homogeneous fields)"));
            }
        };
        if rows.is_empty() {
            return Err(ApiError::field("transactions", "holds no rows"));
        }
        if rows.len() > self.config.max_bulk_rows {
            return Err(ApiError::new(ReturnCode::TooLarge).with(
                "transactions",
                format!("{} rows, at most {}", rows.len(), self.config.max_bulk_rows),
            ));
        }
        let today = self.clock.now().date();
        let mut err: Option<ApiError> = None;
        let mut bad = 0;
        for (i, r) in rows.iter().enumerate() {
            let prefix =
                if body.transactions.is_some() { format!("transactions[{i}].") } else { String::new() };
            let field_prefix =
                if body.transactions.is_some() { prefix.clone() } else { format!("serials[{i}]/") };
            let problem = match command_of(&r.operation) {
                None => Some(ApiError::field(
                    format!("{prefix}operation"),
                    format!("'{}' is not a bulk operation", r.operation),
                )),
                Some(c) if !access(actor.role, Action::Pack(c), &self.config.policy).is_allowed() => {
                    Some(ApiError::new(ReturnCode::Forbidden).with(
                        format!("{prefix}operation"),
                        format!("the role {} may not {}", actor.role, r.operation),
                    ))
                }
                Some(_) => request::fields(
                    &field_prefix,
                    Some(&r.scheme),
                    Some(&r.product_code),
                    Some(&r.serial),
                    Some(&r.batch),
                    Some(&r.expiry),
                    today,
                )
                .err(),
            };
            if let Some(p) = problem {
                bad += 1;
                match &mut err {
                    None => err = Some(p),
                    Some(e) if e.details.len() < MAX_REPORTED_ROWS => e.details.extend(p.details),
                    Some(_) => {}
                }
            }
        }
        if let Some(mut e) = err {
            e.message = format!("{bad} of {} rows are invalid; nothing was processed.", rows.len());
            return Err(e);
        }
        Ok((client_trx_id, rows))
    }

    /// `GET /v1/bulk/{id}`: the job's status, and its results once done. Only its submitter sees it.
    pub async fn bulk(&self, actor: &Actor, id: &str) -> Result<BulkReport, ApiError> {
        let job = self.store.bulk(&id.into()).await?.filter(|j| j.client_id == actor.client_id);
        let Some(job) = job else {
            return Err(ApiError::new(ReturnCode::NotFound).with("bulk_id", format!("no bulk '{id}'")));
        };
        let results = if job.status == BulkStatus::Done {
            self.store
                .bulk_results(&job.id)
                .await?
                .iter()
                .map(|r| kept::read_bulk_result(r).map_err(|e| ApiError::from(StoreError::Corrupt(e))))
                .collect::<Result<Vec<BulkRowResult>, _>>()?
        } else {
            Vec::new()
        };
        Ok(BulkReport {
            bulk_id: job.id,
            status: job.status,
            done: job.done_rows,
            total: job.total_rows,
            results,
        })
    }

    /// The rows of a bulk job as its submitter sent them, in request order, with their labels
    /// (see [`National::submit_labelled_bulk`]). Only its submitter sees it.
    pub async fn bulk_rows(&self, actor: &Actor, id: &str) -> Result<Vec<BulkRowRequest>, ApiError> {
        let job = self.store.bulk(&id.into()).await?.filter(|j| j.client_id == actor.client_id);
        let Some(job) = job else {
            return Err(ApiError::new(ReturnCode::NotFound).with("bulk_id", format!("no bulk '{id}'")));
        };
        let corrupt = |what: &str| ApiError::from(StoreError::Corrupt(format!("bulk {}: {what}", job.id)));
        let stored: serde_json::Value = serde_json::from_str(&job.request).map_err(|_| corrupt("request"))?;
        let rows: Vec<BulkRow> =
            serde_json::from_value(stored["rows"].clone()).map_err(|_| corrupt("rows"))?;
        let labels: Vec<String> = match stored.get("labels") {
            Some(l) => serde_json::from_value(l.clone()).map_err(|_| corrupt("labels"))?,
            None => Vec::new(),
        };
        Ok(rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| BulkRowRequest {
                operation: r.operation,
                scheme: r.scheme,
                product_code: r.product_code,
                serial: r.serial,
                batch: r.batch,
                expiry: r.expiry,
                label: labels.get(i).cloned(),
            })
            .collect())
    }

    /// The bulk worker: one job at a time, in arrival order, until `shutdown` turns true. A job
    /// interrupted by a crash resumes from its last committed chunk. A job whose chunk fails is
    /// put back with a growing delay (up to a minute) while later jobs go ahead, so one bad job
    /// never blocks the queue.
    pub async fn run_bulk_worker(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = BulkBackoff::default();
        loop {
            if *shutdown.borrow() {
                return;
            }
            if !self.bulk_round(&mut backoff, &mut shutdown).await {
                tokio::select! {
                    _ = self.bulk_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    r = shutdown.changed() => if r.is_err() { return },
                }
            }
        }
    }

    /// One round of the bulk worker: the first unfinished job that is not waiting out a delay and
    /// whose lease this node gets (a job another node works on is left to it) is processed to its
    /// end, or until `shutdown`. Whether there was such a job. Tests drive the worker with this.
    pub async fn bulk_round(&self, backoff: &mut BulkBackoff, shutdown: &mut watch::Receiver<bool>) -> bool {
        let jobs = match self.store.unfinished_bulks(MAX_BACKED_OFF + 1).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "bulk worker cannot read its queue");
                Vec::new()
            }
        };
        let failing = &mut backoff.failing;
        failing.retain(|id, _| jobs.iter().any(|j| &j.id == id));
        let now = Instant::now();
        let mut next = None;
        for j in jobs.into_iter().filter(|j| failing.get(&j.id).is_none_or(|(_, at)| *at <= now)) {
            if self.claim_bulk(&j.id).await {
                next = Some(j);
                break;
            }
        }
        let Some(job) = next else { return false };
        match self.process_bulk(&job, shutdown).await {
            Ok(()) => {
                failing.remove(&job.id);
                self.release_bulk(&job.id).await;
            }
            Err(e) => {
                self.release_bulk(&job.id).await;
                let failures = failing.get(&job.id).map_or(1, |(n, _)| n + 1);
                let wait = crate::hub::backoff(failures - 1).min(Duration::from_secs(60));
                tracing::warn!(bulk = %job.id, error = %e, failures, "bulk chunk failed; retrying later");
                failing.insert(job.id.clone(), (failures, Instant::now() + wait));
            }
        }
        true
    }

    async fn process_bulk(
        &self,
        job: &BulkJob,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ApiError> {
        let stored: serde_json::Value = serde_json::from_str(&job.request)
            .map_err(|e| ApiError::from(StoreError::Corrupt(e.to_string())))?;
        let corrupt = |what: &str| ApiError::from(StoreError::Corrupt(format!("bulk {}: {what}", job.id)));
        let role = stored["role"]
            .as_str()
            .and_then(openmvs_core::roles::Role::parse)
            .ok_or_else(|| corrupt("role"))?;
        let location = stored["location"]
            .as_str()
            .and_then(|l| openmvs_core::ids::Location::new(l).ok())
            .ok_or_else(|| corrupt("location"))?;
        let rows: Vec<BulkRow> =
            serde_json::from_value(stored["rows"].clone()).map_err(|_| corrupt("rows"))?;
        let actor = Actor { client_id: job.client_id.clone(), role, market: self.config.market, location };
        // Repeats of a serial inside one bulk are refused, whatever rows they are in and however
        // the product code is spelt (a 13-digit GTIN is the 14-digit one): two rows on one pack in
        // one chunk would otherwise conflict with each other on every attempt.
        let mut seen = HashSet::new();
        let duplicate: Vec<bool> = rows
            .iter()
            .map(|r| {
                let pc = request::product_code("", Some(&r.scheme), Some(&r.product_code))
                    .map_or_else(|_| r.product_code.clone(), |p| p.to_string());
                !seen.insert((pc, r.serial.clone()))
            })
            .collect();
        let mut done = job.done_rows as usize;
        while done < rows.len() {
            if *shutdown.borrow() {
                return Ok(());
            }
            // The lease is renewed before every chunk; a node that lost it (it stalled longer than
            // the lease) stops, and the chunk's expected progress keeps it from applying twice.
            if !self.claim_bulk(&job.id).await {
                tracing::warn!(bulk = %job.id, "bulk job taken over by another node");
                return Ok(());
            }
            let end = (done + self.config.bulk_chunk).min(rows.len());
            self.process_chunk(job, &actor, &rows, &duplicate, done, end).await?;
            done = end;
        }
        Ok(())
    }

    async fn claim_bulk(&self, id: &BulkId) -> bool {
        let now = self.clock.now();
        self.store.claim_bulk(id, &self.node_id, now, now.plus(self.config.lease)).await.unwrap_or_else(|e| {
            tracing::warn!(bulk = %id, error = %e, "bulk lease cannot be taken");
            false
        })
    }

    async fn release_bulk(&self, id: &BulkId) {
        if let Err(e) = self.store.release_bulk(id, &self.node_id).await {
            tracing::warn!(bulk = %id, error = %e, "bulk lease cannot be given up; it ends by itself");
        }
    }

    async fn process_chunk(
        &self,
        job: &BulkJob,
        actor: &Actor,
        rows: &[BulkRow],
        duplicate: &[bool],
        from: usize,
        to: usize,
    ) -> Result<(), ApiError> {
        let keys = guessing::keys(actor);
        for _ in 0..8 {
            let now = self.clock.now();
            let today = now.date();
            let mut uow = UnitOfWork::default();
            let mut results = Vec::with_capacity(to - from);
            // Rows are counted for serial guessing as they are decided, so that a bulk of guesses
            // is contained within its chunk (a chunk decided again after a conflict counts again:
            // containment comes a little early, never late).
            let mut due = Vec::new();
            for (i, row) in rows.iter().enumerate().take(to).skip(from) {
                let id = request::fields(
                    "",
                    Some(&row.scheme),
                    Some(&row.product_code),
                    Some(&row.serial),
                    Some(&row.batch),
                    Some(&row.expiry),
                    today,
                );
                let (Some(command), Ok(id)) = (command_of(&row.operation), id) else {
                    // Rows were valid when accepted; a row that no longer parses (an expiry date
                    // whose century moved) is answered, not dropped.
                    results.push(refused(row, ReturnCode::MalformedRequest));
                    continue;
                };
                if duplicate[i] {
                    results.push(refused(row, ReturnCode::BulkDuplicateSerial));
                    continue;
                }
                let admission = self.guessing.admit(&keys, now).await;
                due.extend(admission.due);
                if let Some(e) = guessing::refusal(admission.verdict, &self.config.guessing) {
                    // Not processed: no state, no alert; audited as the refusal it is.
                    results.push(refused(row, e.code));
                    let operation = format!("bulk-{command}");
                    let record = Record {
                        operation: &operation,
                        subject: &subject(&id),
                        return_code: e.code.as_str(),
                        request: serde_json::to_string(row).unwrap_or_default(),
                        result: kept::refusal(&e),
                    };
                    uow.audit.push(self.audit_entry(actor, now, record));
                    continue;
                }
                let input =
                    PackInput { client_trx_id: format!("{}#{i}", job.id).into(), id, warnings: Vec::new() };
                let loaded: Loaded = self.load(&input.id).await?;
                let (d, input): (Decision, _) =
                    self.decide_read(actor, command, &input, &loaded, now).await?;
                let out = self.outcome(actor, command, &input, &loaded, &d, now);
                let r = &out.answer;
                let offence = is_counted(r.code).then(|| Offence {
                    product_code: input.id.product_code.to_string(),
                    serial: input.id.serial.clone(),
                    batch: input.id.batch.to_string(),
                    code: r.code,
                });
                due.extend(self.guessing.record(&keys, now, offence).await);
                results.push(BulkRowResult {
                    serial: row.serial.clone(),
                    product_code: row.product_code.clone(),
                    accepted: r.accepted,
                    code: r.code,
                    state: r.pack.as_ref().map(|p| p.view.state),
                    alert: r.alert.clone(),
                });
                uow.packs.extend(out.uow.packs);
                uow.alerts.extend(out.uow.alerts);
                uow.outbox.extend(out.uow.outbox);
                uow.audit.push(bulk_entry(self, actor, &input.id, command, row, r, now));
            }
            uow.bulk_progress = Some(BulkProgress {
                id: job.id.clone(),
                expected_done_rows: from as u64,
                results: results.iter().map(kept::bulk_result).collect(),
            });
            let mut settles = Vec::new();
            if let Some(g) = self.guessing_alert(actor, &due, now) {
                uow.alerts.push(g.alert);
                uow.audit.push(g.entry);
                settles = g.settles;
            }
            let wakes_relay = !uow.outbox.is_empty();
            match self.commit(uow).await {
                Ok(_) => {
                    if wakes_relay {
                        self.relay_wake.notify_one();
                    }
                    if !settles.is_empty() {
                        self.guessing.alerted(&settles).await;
                    }
                    return Ok(());
                }
                // A pack in the chunk changed meanwhile: read and decide the chunk again.
                Err(StoreError::Conflict(Conflict::PackVersion { .. })) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("bulk chunk kept conflicting"))
    }
}

/// A row refused before it was decided (malformed, repeated, or its client contained for serial
/// guessing): no state, no alert.
fn refused(row: &BulkRow, code: ReturnCode) -> BulkRowResult {
    BulkRowResult {
        serial: row.serial.clone(),
        product_code: row.product_code.clone(),
        accepted: false,
        code,
        state: None,
        alert: None,
    }
}

fn bulk_entry(
    n: &National,
    actor: &Actor,
    id: &PackIdentifier,
    command: Command,
    row: &BulkRow,
    r: &PackAnswer,
    now: openmvs_core::time::Timestamp,
) -> openmvs_audit::Entry {
    let operation = format!("bulk-{command}");
    let record = Record {
        operation: &operation,
        subject: &subject(id),
        return_code: r.code.as_str(),
        request: serde_json::to_string(row).unwrap_or_default(),
        result: audit_result(r),
    };
    n.audit_entry(actor, now, record)
}

/// What the audit trail keeps of a bulk request: its shape, not every serial (those are audited
/// row by row as they are processed).
fn bulk_summary(body: &BulkRequest) -> serde_json::Value {
    serde_json::json!({
        "client_trx_id": body.client_trx_id,
        "operation": body.operation,
        "product_code": body.product_code,
        "batch": body.batch,
        "serials": body.serials.as_ref().map(Vec::len),
        "transactions": body.transactions.as_ref().map(Vec::len),
    })
}
