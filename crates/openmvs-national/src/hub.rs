//! The hub-facing side: messages from the hub applied once each and in order, and the outbox
//! relay that delivers this market's messages to the hub with retries, backoff and a dead-letter
//! list.

use std::sync::Arc;
use std::time::Duration;

use openmvs_audit::Entry;
use openmvs_core::ids::{Batch, Expiry, Location, MarketCode, Serial};
use openmvs_core::pack::{Command, PackState, SyncChange, SyncDecision, decide_sync};
use openmvs_core::return_code::{AlertCode, ReturnCode};
use openmvs_core::time::Timestamp;
use openmvs_store::relay::{Ack, Outcome, Relay, Round, Sender};
use openmvs_store::{
    AlertRecord, BatchRecord, BoxFuture, Conflict, NewPacks, PackWrite, ProductRecord, StoreError,
    StoredOutboxMessage, UnitOfWork,
};
use openmvs_wire::hub::{
    Delivery, DeliveryAck, Envelope, IntermarketAnswer, IntermarketRequest, Message, MessageAck, PackStateMsg,
};
use tokio::sync::watch;

use crate::request;
use crate::{ApiError, National, new_id};

/// The most messages sent to the hub in one delivery.
pub const MAX_DELIVERY: usize = 100;
pub use openmvs_store::retry::{MAX_BACKOFF, backoff};

/// How this national system reaches the hub.
pub trait HubLink: Send + Sync {
    /// Delivers messages; the answer acknowledges each. An error means nothing is known to have
    /// been applied: every message is retried.
    fn deliver(&self, delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>>;
    /// Asks the hub to have a market that holds the product process a single-pack request. Must
    /// answer within the caller's time budget (the link enforces its own timeout).
    fn intermarket(&self, req: IntermarketRequest) -> BoxFuture<'_, Result<IntermarketAnswer, String>>;
}

/// Sends this market's messages, as envelopes, to the hub.
struct HubSender<'a>(&'a dyn HubLink);

impl Sender for HubSender<'_> {
    type Item = Envelope;

    fn prepare(&self, m: &StoredOutboxMessage) -> Result<Envelope, String> {
        serde_json::from_str(&m.message.payload).map_err(|e| format!("payload does not decode: {e}"))
    }

    fn send(&self, items: Vec<Envelope>) -> BoxFuture<'_, Result<Vec<Ack>, String>> {
        Box::pin(async move {
            let ack = self.0.deliver(Delivery { messages: items }).await?;
            Ok(ack
                .results
                .iter()
                .map(|a| Ack {
                    message_id: a.message_id.as_str().into(),
                    outcome: Outcome::of_status(&a.status, a.error.as_deref()),
                })
                .collect())
        })
    }
}

/// Why an inbound message was not applied.
enum NotApplied {
    /// It will never apply: answered `REJECTED`, and the sender moves it to its dead letters.
    Rejected(String),
    /// The store could not be read: nothing is decided, and the sender retries the delivery.
    Store(StoreError),
}

impl From<StoreError> for NotApplied {
    fn from(e: StoreError) -> NotApplied {
        NotApplied::Store(e)
    }
}

fn ack(id: &str, status: &str, error: Option<String>) -> MessageAck {
    MessageAck { message_id: id.to_owned(), status: status.to_owned(), error }
}

/// The most serials created in one unit of work.
pub const PACKS_PER_UNIT: usize = 2_000;

impl National {
    /// Applies a delivery from the hub, in order. Each message is its own unit of work carrying
    /// its message id, so a redelivered message is answered `DUPLICATE` and changes nothing. If
    /// the store fails, the rest of the delivery is not applied and the error tells the hub to
    /// retry it all.
    pub async fn apply_delivery(&self, delivery: &Delivery) -> Result<DeliveryAck, ApiError> {
        let mut results = Vec::with_capacity(delivery.messages.len());
        for env in &delivery.messages {
            let r = self.apply_message(env).await?;
            results.push(r);
        }
        Ok(DeliveryAck { results })
    }

    async fn apply_message(&self, env: &Envelope) -> Result<MessageAck, ApiError> {
        for _ in 0..8 {
            let now = self.clock.now();
            let mut uow = match self.message_effects(env, now).await {
                Ok(u) => u,
                Err(NotApplied::Store(e)) => return Err(e.into()),
                Err(NotApplied::Rejected(why)) => {
                    tracing::warn!(message = %env.message_id, reason = %why, "hub message rejected");
                    // The rejection is audited once, under the message id, like any applied message.
                    let uow = UnitOfWork {
                        inbox: Some(env.message_id.as_str().into()),
                        audit: vec![self.hub_entry(
                            env,
                            &env.message_id,
                            ReturnCode::MalformedRequest,
                            &why,
                            now,
                        )],
                        ..UnitOfWork::default()
                    };
                    return match self.commit(uow).await {
                        Ok(_) | Err(StoreError::Conflict(Conflict::InboxMessage)) => {
                            Ok(ack(&env.message_id, "REJECTED", Some(why)))
                        }
                        Err(e) => Err(e.into()),
                    };
                }
            };
            self.commit_leading_packs(&mut uow).await?;
            let wakes_relay = !uow.outbox.is_empty();
            match self.commit(uow).await {
                Ok(_) => {
                    if wakes_relay {
                        self.relay_wake.notify_one();
                    }
                    return Ok(ack(&env.message_id, "APPLIED", None));
                }
                Err(StoreError::Conflict(Conflict::InboxMessage)) => {
                    return Ok(ack(&env.message_id, "DUPLICATE", None));
                }
                Err(StoreError::Conflict(Conflict::PackVersion { .. } | Conflict::AlertStatus)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("hub message kept conflicting"))
    }

    /// Commits the serials of a large packs message in units of [`PACKS_PER_UNIT`] ahead of the
    /// message's own unit, which keeps the last of them with the message id and the audit record.
    /// One unit of tens of thousands of serials would hold the writer for tens of milliseconds,
    /// and every verification and supply waiting behind it. Creating packs is idempotent (an
    /// existing serial is left alone), so a crash between the units only means the redelivered
    /// message creates the rest: each pack is still created once, and the message applied once.
    async fn commit_leading_packs(&self, uow: &mut UnitOfWork) -> Result<(), ApiError> {
        for np in &mut uow.new_packs {
            while np.serials.len() > PACKS_PER_UNIT {
                let rest = np.serials.split_off(PACKS_PER_UNIT);
                let head = std::mem::replace(&mut np.serials, rest);
                let part = NewPacks {
                    product_code: np.product_code.clone(),
                    batch: np.batch.clone(),
                    serials: head,
                };
                self.commit(UnitOfWork { new_packs: vec![part], ..UnitOfWork::default() }).await?;
            }
        }
        Ok(())
    }

    /// The audit record of a message from the hub, about `subject`: the pack it changes, the
    /// batch (`<scheme>/<product code>/#<batch>`) or product (`<scheme>/<product code>/`) it
    /// brings, so that a pack's trail and a product's hold what the hub delivered about them; the
    /// alert; or the message id when it is about nothing else. The message id is in the result.
    fn hub_entry(
        &self,
        env: &Envelope,
        subject: &str,
        code: ReturnCode,
        note: &str,
        now: Timestamp,
    ) -> Entry {
        let kind = serde_json::to_value(&env.body).ok().and_then(|v| v["kind"].as_str().map(str::to_owned));
        Entry {
            market: self.config.market.to_string(),
            at_millis: now.unix_millis(),
            actor: env.origin.clone(),
            role: "HUB".into(),
            location: String::new(),
            operation: format!("hub-{}", kind.unwrap_or_default()),
            subject: subject.to_owned(),
            return_code: code.as_str().into(),
            request: serde_json::to_string(&env.body).unwrap_or_default(),
            result: serde_json::json!({"note": note, "message_id": env.message_id}).to_string(),
        }
    }

    /// What applying one message changes, with its inbox id and audit record.
    async fn message_effects(&self, env: &Envelope, now: Timestamp) -> Result<UnitOfWork, NotApplied> {
        let bad = |what: String| NotApplied::Rejected(what);
        let today = now.date();
        let pc = |scheme: &str, code: &str| {
            request::product_code("", Some(scheme), Some(code))
                .map_err(|e| bad(format!("product_code: {:?}", e.details)))
        };
        let mut uow = UnitOfWork { inbox: Some(env.message_id.as_str().into()), ..UnitOfWork::default() };
        let mut note = String::from("applied");
        let mut subject = env.message_id.clone();
        let product_subject = |pc: &openmvs_core::ids::ProductCode| format!("{}/{pc}/", pc.scheme());
        let batch_subject =
            |pc: &openmvs_core::ids::ProductCode, b: &Batch| format!("{}/{pc}/#{b}", pc.scheme());
        match &env.body {
            Message::Product(p) => {
                let product_code = pc(&p.scheme, &p.product_code)?;
                subject = product_subject(&product_code);
                let withdrawn = self.store.product(&product_code).await?.is_some_and(|x| x.withdrawn);
                uow.products.push(ProductRecord {
                    product_code,
                    name: p.name.clone(),
                    common_name: p.common_name.clone(),
                    form: p.form.clone(),
                    strength: p.strength.clone(),
                    pack_type: p.pack_type.clone(),
                    pack_size: p.pack_size.clone(),
                    owner: p.owner.as_str().into(),
                    // A withdrawal is irreversible: new master data never reactivates a product.
                    withdrawn,
                    version: p.version,
                });
            }
            Message::Batch(b) => {
                let product_code = pc(&b.scheme, &b.product_code)?;
                let batch = Batch::new(&b.batch).map_err(|e| bad(format!("batch: {e}")))?;
                let expiry = Expiry::parse(&b.expiry, today).map_err(|e| bad(format!("expiry: {e}")))?;
                let markets = b
                    .markets
                    .iter()
                    .map(|m| MarketCode::new(m).map_err(|e| bad(format!("markets: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                let existing = self.store.batch(&product_code, &batch).await?;
                subject = batch_subject(&product_code, &batch);
                uow.batches.push(BatchRecord {
                    product_code,
                    batch,
                    expiry,
                    recalled: existing.is_some_and(|x| x.recalled),
                    markets,
                });
            }
            Message::Packs(p) => {
                let product_code = pc(&p.scheme, &p.product_code)?;
                let batch = Batch::new(&p.batch).map_err(|e| bad(format!("batch: {e}")))?;
                let serials = p
                    .serials
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Serial::new(s).map_err(|e| bad(format!("serials[{i}]: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                // A pack without its batch could never be verified: the batch comes first.
                if self.store.batch(&product_code, &batch).await?.is_none() {
                    return Err(bad(format!("batch {} of {} is unknown here", p.batch, p.product_code)));
                }
                note = format!("{} serials", serials.len());
                subject = batch_subject(&product_code, &batch);
                uow.new_packs.push(NewPacks { product_code, batch, serials });
            }
            Message::Recall(r) => {
                let product_code = pc(&r.scheme, &r.product_code)?;
                let batch = Batch::new(&r.batch).map_err(|e| bad(format!("batch: {e}")))?;
                let mut b =
                    self.store.batch(&product_code, &batch).await?.ok_or_else(|| {
                        bad(format!("batch {} of {} is unknown here", r.batch, r.product_code))
                    })?;
                b.recalled = true;
                subject = batch_subject(&product_code, &batch);
                uow.batches.push(b);
            }
            Message::Withdrawal(w) => {
                let product_code = pc(&w.scheme, &w.product_code)?;
                let mut p = self
                    .store
                    .product(&product_code)
                    .await?
                    .ok_or_else(|| bad(format!("product {} is unknown here", w.product_code)))?;
                p.withdrawn = true;
                subject = product_subject(&product_code);
                uow.products.push(p);
            }
            Message::PackState(s) => {
                note = self.sync_effects(env, s, now, &mut uow).await?;
                if let Ok(p) = pc(&s.scheme, &s.product_code) {
                    subject = format!("{}/{p}/{}", p.scheme(), s.serial);
                }
            }
            Message::Alert(a) => {
                // A copy of an inter-market alert, for the market that did not raise it.
                let view = a.alert.to_alert().map_err(|e| bad(format!("alert: {e}")))?;
                subject = format!("alert/{}", view.id);
                if !view.markets().contains(&self.config.market) {
                    return Err(bad(format!("alert {} does not concern {}", view.id, self.config.market)));
                }
                if self.store.alert(&view.id).await?.is_some() {
                    note = format!("alert {} held before", view.id);
                } else {
                    note = format!("alert {} from {}", view.id, env.origin);
                    uow.alerts.push(self.alert_copy(&view, format!("hub:{}", view.pack_market).into(), now));
                }
            }
            Message::AlertChange(openmvs_wire::hub::AlertChangeMsg { alert_id, .. })
            | Message::AlertComment(openmvs_wire::hub::AlertCommentMsg { alert_id, .. }) => {
                subject = format!("alert/{alert_id}");
                note = self.apply_alert_change(&env.body, &mut uow).await?.map_err(bad)?;
            }
            Message::AuditHead(_) => {
                return Err(bad("audit heads go from national systems to the hub, not back".into()));
            }
        }
        uow.audit.push(self.hub_entry(env, &subject, ReturnCode::Success, &note, now));
        Ok(uow)
    }

    /// A state change made in another market (or by the OBP) arriving for this market's copy.
    async fn sync_effects(
        &self,
        env: &Envelope,
        s: &PackStateMsg,
        now: Timestamp,
        uow: &mut UnitOfWork,
    ) -> Result<String, NotApplied> {
        let bad = |what: String| NotApplied::Rejected(what);
        let product_code = request::product_code("", Some(&s.scheme), Some(&s.product_code))
            .map_err(|e| bad(format!("product_code: {:?}", e.details)))?;
        let serial = Serial::new(&s.serial).map_err(|e| bad(format!("serial: {e}")))?;
        let state = PackState::parse(&s.state).ok_or_else(|| bad(format!("state '{}'", s.state)))?;
        let command = Command::parse(&s.command).ok_or_else(|| bad(format!("command '{}'", s.command)))?;
        let location = Location::new(&s.location).map_err(|e| bad(format!("location: {e}")))?;
        // An OBP's change names no market; it is recorded as coming from this market's hub link.
        let origin = MarketCode::new(&s.market).unwrap_or(self.config.market);
        let at = Timestamp::parse_rfc3339(&s.at).ok_or_else(|| bad(format!("at '{}'", s.at)))?;
        let Some(stored) = self.store.pack(&product_code, &serial).await? else {
            return Err(bad(format!("pack {}/{} is unknown here", s.product_code, s.serial)));
        };
        let change = SyncChange { state, command, origin, location, at };
        match decide_sync(&stored.pack, &change) {
            SyncDecision::Apply(pack) => {
                uow.packs.push(PackWrite {
                    product_code,
                    serial,
                    pack,
                    expected_version: Some(stored.version),
                });
                Ok(format!("state {} from {}", s.state, s.market))
            }
            SyncDecision::Ignore if state == PackState::Active => {
                Ok("nothing here for that undo to revert".into())
            }
            SyncDecision::Ignore => Ok("already reflected".into()),
            SyncDecision::Conflict(code) => {
                let record = AlertRecord {
                    id: new_id("ALR", now).into(),
                    code,
                    return_code: ReturnCode::PackInactiveStateChange,
                    market: self.config.market,
                    pack_market: self.config.market,
                    product_code: s.product_code.clone(),
                    serial,
                    batch: s.batch.clone(),
                    location: change.location.clone(),
                    client_id: format!("hub:{}", s.market).into(),
                    created_at: now,
                    status: openmvs_core::alert::AlertStatus::Open,
                    classification: None,
                    comment: Some(format!(
                        "pack already {} here when {} reported it {}",
                        stored.pack.state, s.market, s.state
                    )),
                    // One alert per synchronised change, however often it is redelivered.
                    source_key: format!("sync/{}", env.message_id),
                    thread: Default::default(),
                    version: 0,
                };
                debug_assert_eq!(code, AlertCode::A24);
                if let Some(p) = self.store.product(&product_code).await? {
                    uow.outbox.push(self.message(
                        &s.product_code,
                        Message::Alert(openmvs_wire::hub::AlertMsg {
                            alert: (&crate::alerts::view(&record)).into(),
                            owner: p.owner.into_string(),
                        }),
                        now,
                    ));
                }
                uow.alerts.push(record);
                Ok(format!("conflict: pack already {} here", stored.pack.state))
            }
        }
    }

    /// The outbox relay: delivers due messages to the hub, oldest first and one per product at a
    /// time, until `shutdown` turns true.
    pub async fn run_relay(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(hub) = self.hub.clone() else { return };
        loop {
            if *shutdown.borrow() {
                return;
            }
            let sent = match self.relay_once(hub.as_ref()).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay cannot read the outbox");
                    0
                }
            };
            if sent == 0 {
                tokio::select! {
                    _ = self.relay_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    r = shutdown.changed() => if r.is_err() { return },
                }
            }
        }
    }

    /// One round of the relay; returns how many messages were acknowledged. The first round of
    /// this process first resumes the outbox ([`openmvs_store::relay::Resumed`]).
    pub async fn relay_once(&self, hub: &dyn HubLink) -> Result<usize, StoreError> {
        let relay = Relay {
            max_attempts: self.config.max_delivery_attempts,
            lease: self.config.lease,
            limit: MAX_DELIVERY,
        };
        // What the process before this one left waiting ends before the first round.
        self.relay_resumed.once(self.store.as_ref(), self.clock.now()).await?;
        // Claimed, not just read: a relay on another node sharing the store skips these until the
        // lease ends, and takes them over if this node dies before marking them.
        match relay.round(self.store.as_ref(), &HubSender(hub), "hub", self.clock.now()).await? {
            Round::Answered(n) => Ok(n),
            Round::Idle | Round::Down => Ok(0),
        }
    }
}
