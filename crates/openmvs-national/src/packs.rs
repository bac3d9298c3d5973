//! Single-pack requests: verify, the state changes and their undos, and inter-market requests
//! processed on behalf of another market.

use std::borrow::Cow;

use openmvs_audit::Entry;
use openmvs_core::answer::{AlertRef, AnsweredPack, PackAnswer, ProductSummary};
use openmvs_core::guessing::is_counted;
use openmvs_core::ids::{MarketCode, PackIdentifier};
use openmvs_core::pack::{BatchFacts, Command, Context, Decision, Facts, Request, decide, decide_rescan};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Action, access};
use openmvs_core::scan;
use openmvs_core::time::Timestamp;
use openmvs_store::{
    BatchRecord, Conflict, IdempotencyRecord, OutboxMessage, PackWrite, ProductRecord, StoreError,
    StoredPack, UnitOfWork,
};
use openmvs_wire::api::PackRequest;
use openmvs_wire::hub::{AlertMsg, Envelope, IntermarketRequest, Message, PackStateMsg};
use openmvs_wire::kept;

use crate::guessing::{self, Offence};
use crate::request::{self, PackInput, request_hash};
use crate::{Actor, ApiError, National, Record, new_id};

/// How often a request is read and decided again after losing a race, before giving up with 503.
/// Attempts of one request against concurrent changes of its pack. Inside a node, requests on one
/// pack take turns; this bounds the races with other nodes sharing the store.
const MAX_ATTEMPTS: usize = 32;

/// The audit subject of a pack.
pub fn subject(id: &PackIdentifier) -> String {
    format!("{}/{}/{}", id.product_code.scheme(), id.product_code, id.serial)
}

/// A validated single-pack request on its way to be settled.
struct Routed<'a> {
    input: &'a PackInput,
    operation: &'a str,
    subject: &'a str,
    /// Routed here by the hub from another market.
    from_hub: bool,
}

/// What the audit trail keeps of an answer: the outcome, not the product's master data (which
/// the trail of the upload already holds). The whole answer is kept with the idempotency record.
pub(crate) fn audit_result(r: &PackAnswer) -> String {
    serde_json::json!({
        "trx_id": r.trx_id,
        "accepted": r.accepted,
        "return_code": r.code.as_str(),
        "state": r.pack.as_ref().map(|p| p.view.state.as_str()),
        "reasons": r.pack.as_ref().map(|p| p.view.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
        "alert": r.alert.as_ref().map(|a| serde_json::json!({"id": a.id.as_str(), "code": a.code.as_str()})),
        "intermarket": r.intermarket,
        "warnings": r.warnings.iter().map(|w| w.code.as_str()).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The audit subject of a refused request whose product code and serial can still be read, so the
/// refusal shows in that pack's trail; empty when they cannot.
fn subject_hint(body: &PackRequest) -> String {
    let pc = request::product_code("", body.scheme.as_deref(), body.product_code.as_deref()).ok();
    let serial = body.serial.as_deref().and_then(|s| openmvs_core::ids::Serial::new(s).ok());
    match (pc, serial) {
        (Some(pc), Some(serial)) => format!("{}/{pc}/{serial}", pc.scheme()),
        _ => String::new(),
    }
}

/// What one request decided, before it is committed.
pub(crate) struct Outcome {
    pub answer: PackAnswer,
    pub uow: UnitOfWork,
}

/// The facts one decision needs, read from the store.
pub(crate) struct Loaded {
    pub product: Option<ProductRecord>,
    pub pack: Option<(StoredPack, BatchRecord)>,
    pub requested_batch_known: bool,
}

impl National {
    /// A single-pack request from an end user: `command` on the pack in `body`.
    pub async fn pack(
        &self,
        actor: &Actor,
        command: Command,
        body: &PackRequest,
    ) -> Result<PackAnswer, ApiError> {
        let now = self.clock.now();
        let operation = command.to_string();
        let input = match request::pack_input(body, now.date()) {
            Ok(i) => i,
            Err(e) => return Err(self.refuse(actor, &operation, &subject_hint(body), body, e).await),
        };
        let subject = subject(&input.id);
        if !access(actor.role, Action::Pack(command), &self.config.policy).is_allowed() {
            let e = ApiError::new(ReturnCode::Forbidden).with(
                "operation",
                format!("the role {} may not {operation} in {}", actor.role, self.config.market),
            );
            return Err(self.refuse(actor, &operation, &subject, body, e).await);
        }
        if actor.market != self.config.market {
            let e = ApiError::new(ReturnCode::Forbidden).with("market", "the token is for another market");
            return Err(self.refuse(actor, &operation, &subject, body, e).await);
        }
        // Serial guessing: a client (or premises) over the threshold is slowed, then refused;
        // such a request is not processed, so it raises no alert.
        let keys = guessing::keys(actor);
        let admission = self.guessing.admit(&keys, now).await;
        if !admission.due.is_empty() {
            self.raise_guessing_alert(actor, &admission.due, now).await;
        }
        if let Some(e) = guessing::refusal(admission.verdict, &self.config.guessing) {
            return Err(self.refuse(actor, &operation, &subject, body, e).await);
        }
        let req = Routed { input: &input, operation: &operation, subject: &subject, from_hub: false };
        let (answer, replay) = self.settle(actor, command, &req, body, now).await?;
        // A replay was counted when it was first answered.
        if !replay {
            let offence = is_counted(answer.code).then(|| Offence {
                product_code: input.id.product_code.to_string(),
                serial: input.id.serial.clone(),
                batch: input.id.batch.to_string(),
                code: answer.code,
            });
            let due = self.guessing.record(&keys, now, offence).await;
            if !due.is_empty() {
                self.raise_guessing_alert(actor, &due, now).await;
            }
        }
        Ok(answer)
    }

    /// Reads, decides and commits one request until it wins any race, with the client's
    /// transaction id: a repeat gets the stored answer (a replay), other content under the same id
    /// is 409. The answer is kept as [`kept::pack_answer`] makes it: the JSON it is given in.
    /// `req.from_hub` marks a request another market routed here: it never asks the hub again and
    /// its answer says `intermarket`. Answers whether the answer was a replay.
    async fn settle(
        &self,
        actor: &Actor,
        command: Command,
        req: &Routed<'_>,
        body: &impl serde::Serialize,
        now: Timestamp,
    ) -> Result<(PackAnswer, bool), ApiError> {
        let (input, operation, subject) = (req.input, req.operation, req.subject);
        let hash = request_hash(operation, &input.id);
        let audit_op = if req.from_hub { format!("intermarket-{operation}") } else { operation.to_owned() };
        let _turn = self.pack_locks.lock(&input.id.product_code, &input.id.serial).await;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 1 {
                // Another node keeps winning the race: let it finish before reading again.
                let jitter = u64::from(input.client_trx_id.as_str().len() as u8 ^ attempt as u8) % 4;
                tokio::time::sleep(std::time::Duration::from_millis(1 + jitter)).await;
            }
            let id = &input.id;
            let key = (&actor.client_id, &input.client_trx_id);
            let ctx = self.store.pack_context(Some(key), &id.product_code, &id.serial, &id.batch).await?;
            if let Some(stored) = &ctx.idempotency {
                return Ok((self.replay(actor, &audit_op, subject, body, stored, hash).await?, true));
            }
            let loaded = Loaded {
                product: ctx.product,
                pack: ctx.pack,
                requested_batch_known: ctx.requested_batch_known,
            };
            let mut out = self.decide_pack(actor, command, input, &loaded, now, !req.from_hub).await?;
            out.answer.intermarket |= req.from_hub;
            // "The hub (or the market behind it) could not be reached" is not an answer to keep:
            // a retry with the same client_trx_id must ask the hub again, so only the attempt is
            // audited.
            if !out.answer.code.is_unreachable() {
                out.uow.idempotency = Some(IdempotencyRecord {
                    client_id: actor.client_id.clone(),
                    client_trx_id: input.client_trx_id.clone(),
                    request_hash: hash,
                    status: 200,
                    response: kept::pack_answer(&out.answer),
                    created_at: now,
                });
            }
            out.uow.audit.push(self.entry(actor, &audit_op, subject, body, &out.answer, now));
            let wakes_relay = !out.uow.outbox.is_empty();
            match self.commit(out.uow).await {
                Ok(_) => {
                    if wakes_relay {
                        self.relay_wake.notify_one();
                    }
                    return Ok((out.answer, false));
                }
                Err(StoreError::Conflict(Conflict::PackVersion { .. } | Conflict::IdempotencyKey)) => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("too many concurrent changes of one pack"))
    }

    /// Answers a repeated `client_trx_id`: the stored response if the request is the same, 409 if not.
    async fn replay(
        &self,
        actor: &Actor,
        operation: &str,
        subject: &str,
        body: &impl serde::Serialize,
        stored: &IdempotencyRecord,
        hash: [u8; 32],
    ) -> Result<PackAnswer, ApiError> {
        if stored.request_hash != hash {
            let e = ApiError::new(ReturnCode::TransactionIdReused)
                .with("client_trx_id", "was used by this client for a different request");
            return Err(self.refuse(actor, operation, subject, body, e).await);
        }
        // Read on the day it was decided, so that its expiry reads as it did then.
        let answer = kept::read_pack_answer(&stored.response, stored.created_at.date())
            .map_err(|e| ApiError::from(StoreError::Corrupt(e)))?;
        // The retry is audited as what it is, a replay: it changed nothing and got the stored answer.
        let entry =
            self.entry(actor, &format!("{operation}-replay"), subject, body, &answer, self.clock.now());
        self.commit(UnitOfWork { audit: vec![entry], ..UnitOfWork::default() }).await?;
        Ok(answer)
    }

    /// Records a refused request in the audit trail (and nothing else), then hands back the error.
    pub(crate) async fn refuse(
        &self,
        actor: &Actor,
        operation: &str,
        subject: &str,
        request: &impl serde::Serialize,
        e: ApiError,
    ) -> ApiError {
        let entry = self.audit_entry(
            actor,
            self.clock.now(),
            Record {
                operation,
                subject,
                return_code: e.code.as_str(),
                request: serde_json::to_string(request).unwrap_or_default(),
                result: kept::refusal(&e),
            },
        );
        match self.commit(UnitOfWork { audit: vec![entry], ..UnitOfWork::default() }).await {
            Ok(_) => e,
            // The refusal could not be audited: the client is told to retry rather than given an
            // answer the audit trail does not show.
            Err(err) => ApiError::from(err),
        }
    }

    fn entry(
        &self,
        actor: &Actor,
        operation: &str,
        subject: &str,
        request: &impl serde::Serialize,
        answer: &PackAnswer,
        now: Timestamp,
    ) -> Entry {
        self.audit_entry(
            actor,
            now,
            Record {
                operation,
                subject,
                return_code: answer.code.as_str(),
                request: serde_json::to_string(request).unwrap_or_default(),
                result: audit_result(answer),
            },
        )
    }

    /// Reads what the store knows about the pack in `id`.
    pub(crate) async fn load(&self, id: &PackIdentifier) -> Result<Loaded, ApiError> {
        let ctx = self.store.pack_context(None, &id.product_code, &id.serial, &id.batch).await?;
        Ok(Loaded { product: ctx.product, pack: ctx.pack, requested_batch_known: ctx.requested_batch_known })
    }

    /// Decides one request and builds everything it changes (without idempotency and audit,
    /// which the caller adds). `intermarket` allows asking the hub when the product is unknown.
    pub(crate) async fn decide_pack(
        &self,
        actor: &Actor,
        command: Command,
        input: &PackInput,
        loaded: &Loaded,
        now: Timestamp,
        intermarket: bool,
    ) -> Result<Outcome, ApiError> {
        let (decision, input) = self.decide_read(actor, command, input, loaded, now).await?;
        if decision.needs_intermarket() && intermarket {
            return self.ask_hub(actor, command, &input, now).await;
        }
        Ok(self.outcome(actor, command, &input, loaded, &decision, now))
    }

    /// Decides one request as read and, when its identifier matches no pack, as it would be with
    /// each corruption a scanner makes undone ([`scan::repairs`], each repair read from the
    /// store): a failure a corruption explains becomes a request to rescan, which raises no alert
    /// ([`decide_rescan`]). The input comes back with the warning of that corruption added.
    pub(crate) async fn decide_read<'a>(
        &self,
        actor: &Actor,
        command: Command,
        input: &'a PackInput,
        loaded: &Loaded,
        now: Timestamp,
    ) -> Result<(Decision, Cow<'a, PackInput>), ApiError> {
        let decision = self.decide_loaded(actor, command, &input.id, loaded, now);
        if !decision.may_be_misread() {
            return Ok((decision, Cow::Borrowed(input)));
        }
        let repairs = scan::repairs(&input.id);
        let mut repaired = Vec::with_capacity(repairs.len());
        for r in &repairs {
            let facts = self.load(&r.id).await?;
            repaired.push(self.decide_loaded(actor, command, &r.id, &facts, now));
        }
        let (decision, explained) = decide_rescan(decision, &repaired);
        let Some(warning) = explained.and_then(|i| repairs.get(i)).map(|r| r.warning.clone()) else {
            return Ok((decision, Cow::Borrowed(input)));
        };
        let mut input = input.clone();
        if !input.warnings.iter().any(|w| w.code == warning.code) {
            input.warnings.push(warning);
        }
        Ok((decision, Cow::Owned(input)))
    }

    pub(crate) fn decide_loaded(
        &self,
        actor: &Actor,
        command: Command,
        id: &PackIdentifier,
        loaded: &Loaded,
        now: Timestamp,
    ) -> Decision {
        let batch_facts =
            loaded.pack.as_ref().map(|(_, b)| BatchFacts { expiry: b.expiry, recalled: b.recalled });
        let facts = Facts {
            product_withdrawn: loaded.product.as_ref().map(|p| p.withdrawn),
            pack: loaded.pack.as_ref().map(|(p, _)| &p.pack).zip(batch_facts.as_ref()),
            requested_batch_known: loaded.requested_batch_known,
        };
        let ctx = Context { location: &actor.location, now, policy: &self.config.policy };
        decide(&Request { command, batch: &id.batch, expiry: Some(&id.expiry) }, &facts, &ctx)
    }

    /// Turns a decision into the answer and the unit of work that makes it true.
    pub(crate) fn outcome(
        &self,
        actor: &Actor,
        command: Command,
        input: &PackInput,
        loaded: &Loaded,
        d: &Decision,
        now: Timestamp,
    ) -> Outcome {
        let id = &input.id;
        let mut uow = UnitOfWork::default();
        let alert = d.alert().map(|code| {
            // Raised for the market of the request (another market's, for an inter-market
            // request), on a pack this market holds.
            let r = AlertRef { id: new_id("ALR", now).into(), code };
            let source_key = format!("{}/{}", actor.client_id, input.client_trx_id);
            let record = crate::alerts::raised(actor, id, &r, d.code, self.config.market, source_key, now);
            if self.hub.is_some()
                && let Some(p) = &loaded.product
            {
                let alert = (&crate::alerts::view(&record)).into();
                uow.outbox.push(self.message(
                    id.product_code.as_str(),
                    Message::Alert(AlertMsg { alert, owner: p.owner.to_string() }),
                    now,
                ));
            }
            uow.alerts.push(record);
            r
        });
        if let (Some(update), Some((stored, batch))) = (&d.update, &loaded.pack) {
            uow.packs.push(PackWrite {
                product_code: id.product_code.clone(),
                serial: id.serial.clone(),
                pack: update.clone(),
                expected_version: Some(stored.version),
            });
            if d.changed_state(stored.pack.state) && batch.markets.len() > 1 && self.hub.is_some() {
                uow.outbox.push(self.message(
                    id.product_code.as_str(),
                    Message::PackState(PackStateMsg {
                        scheme: id.product_code.scheme().to_string(),
                        product_code: id.product_code.to_string(),
                        serial: id.serial.to_string(),
                        batch: id.batch.to_string(),
                        state: update.state.to_string(),
                        command: command.to_string(),
                        market: self.config.market.to_string(),
                        location: actor.location.to_string(),
                        at: now.to_rfc3339(),
                    }),
                    now,
                ));
            }
        }
        let info = d.code.info();
        let answer = PackAnswer {
            trx_id: new_id("TRX", now),
            client_trx_id: input.client_trx_id.clone(),
            accepted: d.accepted,
            code: d.code,
            level: info.level,
            message: info.message.to_owned(),
            pack: d
                .view
                .as_ref()
                .map(|v| AnsweredPack { id: PackIdentifier { nhrn: None, ..id.clone() }, view: v.clone() }),
            product: loaded.product.as_ref().map(|p| ProductSummary {
                name: p.name.clone(),
                common_name: p.common_name.clone(),
                strength: p.strength.clone(),
                form: p.form.clone(),
                pack_size: p.pack_size.clone(),
            }),
            alert,
            intermarket: false,
            warnings: input.warnings.clone(),
        };
        Outcome { answer, uow }
    }

    /// An outbox message to the hub.
    pub(crate) fn message(&self, ordering_key: &str, body: Message, now: Timestamp) -> OutboxMessage {
        let envelope = Envelope {
            message_id: new_id(&format!("MSG-{}", self.config.market), now),
            origin: self.config.market.to_string(),
            ordering_key: ordering_key.to_owned(),
            body,
        };
        OutboxMessage {
            message_id: envelope.message_id.as_str().into(),
            destination: "hub".into(),
            kind: envelope.body.kind().into(),
            ordering_key: ordering_key.to_owned(),
            payload: serde_json::to_string(&envelope).unwrap_or_default(),
        }
    }

    /// The product is unknown here: ask the hub to have a market that holds it process the request.
    async fn ask_hub(
        &self,
        actor: &Actor,
        command: Command,
        input: &PackInput,
        now: Timestamp,
    ) -> Result<Outcome, ApiError> {
        let id = &input.id;
        let unknown = |code: ReturnCode| {
            let loaded = Loaded { product: None, pack: None, requested_batch_known: false };
            let d = Decision { code, accepted: false, update: None, view: None };
            self.outcome(actor, command, input, &loaded, &d, now)
        };
        let Some(hub) = &self.hub else { return Ok(unknown(ReturnCode::ProductUnknown)) };
        let req = IntermarketRequest {
            market: self.config.market.to_string(),
            client_id: actor.client_id.to_string(),
            role: actor.role.to_string(),
            location: actor.location.to_string(),
            command: command.to_string(),
            client_trx_id: input.client_trx_id.to_string(),
            scheme: id.product_code.scheme().to_string(),
            product_code: id.product_code.to_string(),
            serial: id.serial.to_string(),
            batch: id.batch.to_string(),
            expiry: id.expiry.to_string(),
        };
        // The other market's answer, decided today; one that does not read counts as no answer.
        // The hub answers even when the market holding the product does not: it then names
        // that market as unreachable.
        let answered = hub.intermarket(req).await.and_then(|a| {
            let market = MarketCode::new(a.market.as_deref().unwrap_or_default())
                .map_err(|e| format!("the answering market: {e}"));
            let unreachable = a.unreachable;
            a.response
                .map(|r| {
                    let answer =
                        r.to_answer(now.date()).map_err(|e| format!("the answer does not read: {e}"))?;
                    Ok((market?, answer))
                })
                .transpose()
                .map(|answer| (answer, unreachable))
        });
        match answered {
            Ok((Some((market, mut answer)), _)) => {
                answer.intermarket = true;
                answer.client_trx_id = input.client_trx_id.clone();
                // This market's reading of the scan, then what the other market found (the
                // corruption it undid when it asks for a rescan).
                let remote = std::mem::replace(&mut answer.warnings, input.warnings.clone());
                for w in remote {
                    if !answer.warnings.iter().any(|x| x.code == w.code) {
                        answer.warnings.push(w);
                    }
                }
                let mut uow = UnitOfWork::default();
                if let Some(a) = &answer.alert {
                    // The alert lives here too, under its one id: the pharmacy reads it here and
                    // this market's NMVO works it. Sent on to the hub, so that it arrives there
                    // before anything done to it here.
                    let copy = self.intermarket_alert(actor, id, a, market, answer.code, now);
                    let alert = (&crate::alerts::view(&copy)).into();
                    uow.outbox.push(self.message(
                        id.product_code.as_str(),
                        Message::Alert(AlertMsg { alert, owner: String::new() }),
                        now,
                    ));
                    uow.alerts.push(copy);
                }
                Ok(Outcome { answer, uow })
            }
            Ok((None, unreachable)) if unreachable.is_empty() => Ok(unknown(ReturnCode::ProductUnknown)),
            Ok((None, unreachable)) => {
                tracing::warn!(markets = %unreachable.join(","), "the hub could not reach the market holding the product");
                Ok(unknown(ReturnCode::MarketUnreachable))
            }
            Err(e) => {
                tracing::warn!(error = %e, "inter-market request failed");
                Ok(unknown(ReturnCode::HubUnreachable))
            }
        }
    }

    /// Processes a request that the hub routed here from another market, as if it had been made
    /// in that market. `None` when this market does not know the product either.
    pub async fn intermarket(&self, req: &IntermarketRequest) -> Result<Option<PackAnswer>, ApiError> {
        let now = self.clock.now();
        let bad = |field: &str, why: String| ApiError::field(field, why);
        let command = Command::parse(&req.command)
            .ok_or_else(|| bad("command", format!("'{}' is unknown", req.command)))?;
        let role = openmvs_core::roles::Role::parse(&req.role)
            .ok_or_else(|| bad("role", format!("'{}'", req.role)))?;
        let market = MarketCode::new(&req.market).map_err(|e| bad("market", e.to_string()))?;
        let location =
            openmvs_core::ids::Location::new(&req.location).map_err(|e| bad("location", e.to_string()))?;
        let id = request::fields(
            "",
            Some(&req.scheme),
            Some(&req.product_code),
            Some(&req.serial),
            Some(&req.batch),
            Some(&req.expiry),
            now.date(),
        )?;
        if self.store.product(&id.product_code).await?.is_none() {
            return Ok(None);
        }
        if !access(role, Action::Pack(command), &self.config.policy).is_allowed() {
            return Err(ApiError::new(ReturnCode::Forbidden)
                .with("role", format!("the role {role} may not {command} in {}", self.config.market)));
        }
        // The initiating market's client is not a client here: its transactions are kept apart.
        let actor =
            Actor { client_id: format!("{}:{}", market, req.client_id).into(), role, market, location };
        let input = PackInput { client_trx_id: req.client_trx_id.as_str().into(), id, warnings: Vec::new() };
        let operation = command.to_string();
        let subject = subject(&input.id);
        let routed = Routed { input: &input, operation: &operation, subject: &subject, from_hub: true };
        self.settle(&actor, command, &routed, req, now).await.map(|(answer, _)| Some(answer))
    }
}
