//! Messages from the national systems: a multi-market pack's new state, forwarded to the other
//! markets of its batch, and alerts for the owning OBP, stored once and queued for its callback.
//! Each message is applied once by its id, in the same unit of work as its effect.

use openmvs_audit::Entry;
use openmvs_core::alert::AlertStatus;
use openmvs_core::ids::{Batch, MarketCode, ProductCode, Scheme};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::time::Timestamp;
use openmvs_store::hub::{HUB_AUDIT_MARKET, HubAlertRecord, HubUnitOfWork};
use openmvs_store::{AuditStore, Conflict, StoreError};
use openmvs_wire::hub::{
    AlertMsg, Delivery, DeliveryAck, Envelope, Message, MessageAck, PackStateMsg, SignedHead,
};
use serde_json::json;

use crate::{ApiError, Hub, message_to};

/// How often a message is decided again after its unit lost a race, before the delivery is
/// answered 503 and retried by the sender.
const MAX_ATTEMPTS: usize = 8;

/// What applying a message changes, or why it never will.
enum Effects {
    /// Commit this unit (it carries the inbox id and the audit record).
    Apply(HubUnitOfWork),
    /// The message will never apply: answered `REJECTED`, so the sender moves it to its dead
    /// letters instead of retrying it forever.
    Reject(String),
}

fn ack(id: &str, status: &str, error: Option<String>) -> MessageAck {
    MessageAck { message_id: id.to_owned(), status: status.to_owned(), error }
}

impl Hub {
    /// `POST /internal/v1/messages` from the national system of `origin` (named by its client
    /// certificate): applies the messages in order, each once by its id. A multi-market pack's
    /// state is forwarded to every other market of its batch; an alert is stored for the owning
    /// OBP and queued for its callback; anything else is `REJECTED`. A store failure stops the
    /// delivery with an error, and the sender retries it all: what was applied answers
    /// `DUPLICATE` then.
    pub async fn apply_from_national(
        &self,
        origin: MarketCode,
        delivery: &Delivery,
    ) -> Result<DeliveryAck, ApiError> {
        let mut results = Vec::with_capacity(delivery.messages.len());
        for env in &delivery.messages {
            results.push(self.apply_one(origin, env).await?);
        }
        Ok(DeliveryAck { results })
    }

    async fn apply_one(&self, origin: MarketCode, env: &Envelope) -> Result<MessageAck, ApiError> {
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let uow = match self.effects(origin, env, now).await? {
                Effects::Apply(uow) => uow,
                Effects::Reject(why) => {
                    tracing::warn!(%origin, message = %env.message_id, reason = %why, "national message rejected");
                    // Recorded under its id like an applied message, so the rejection is audited once.
                    let uow = HubUnitOfWork {
                        inbox: Some(env.message_id.as_str().into()),
                        audit: vec![self.national_entry(
                            origin,
                            env,
                            ReturnCode::MalformedRequest,
                            &why,
                            now,
                        )],
                        ..HubUnitOfWork::default()
                    };
                    return match self.commit(uow).await {
                        Ok(()) | Err(StoreError::Conflict(Conflict::InboxMessage)) => {
                            Ok(ack(&env.message_id, "REJECTED", Some(why)))
                        }
                        Err(e) => Err(e.into()),
                    };
                }
            };
            let has_alert = !uow.alerts.is_empty();
            match self.commit(uow).await {
                Ok(()) => return Ok(ack(&env.message_id, "APPLIED", None)),
                Err(StoreError::Conflict(Conflict::InboxMessage)) => {
                    return Ok(ack(&env.message_id, "DUPLICATE", None));
                }
                // The alert's source key exists: the same alert came before under another
                // message id (a replay from the market's dead letters). The message is recorded
                // so that it too is applied once, and nothing is stored or called back again.
                Err(StoreError::Conflict(Conflict::Exists(_))) if has_alert => {
                    let uow = HubUnitOfWork {
                        inbox: Some(env.message_id.as_str().into()),
                        audit: vec![self.national_entry(
                            origin,
                            env,
                            ReturnCode::Success,
                            "alert stored before",
                            now,
                        )],
                        ..HubUnitOfWork::default()
                    };
                    return match self.commit(uow).await {
                        Ok(()) | Err(StoreError::Conflict(Conflict::InboxMessage)) => {
                            Ok(ack(&env.message_id, "DUPLICATE", None))
                        }
                        Err(e) => Err(e.into()),
                    };
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("a national message kept conflicting"))
    }

    /// Decides what one message changes.
    async fn effects(&self, origin: MarketCode, env: &Envelope, now: Timestamp) -> Result<Effects, ApiError> {
        // The certificate says who sends; a message claiming another sender is not believed.
        if env.origin != origin.as_str() {
            return Ok(Effects::Reject(format!("origin '{}' but sent by {origin}", env.origin)));
        }
        let mut uow =
            HubUnitOfWork { inbox: Some(env.message_id.as_str().into()), ..HubUnitOfWork::default() };
        let note = match &env.body {
            Message::PackState(s) => match self.forward_pack_state(origin, env, s, &mut uow).await? {
                Ok(note) => note,
                Err(why) => return Ok(Effects::Reject(why)),
            },
            Message::Alert(a) => match self.store_alert(origin, env, a, now, &mut uow).await? {
                Ok(note) => note,
                Err(why) => return Ok(Effects::Reject(why)),
            },
            Message::AlertChange(_) | Message::AlertComment(_) => {
                match self.relay_alert_change(origin, &env.message_id, &env.body, &mut uow).await? {
                    Ok(note) => note,
                    Err(why) => return Ok(Effects::Reject(why)),
                }
            }
            Message::AuditHead(h) => {
                if h.market != origin.as_str() {
                    return Ok(Effects::Reject(format!(
                        "an audit head of market '{}' sent by {origin}",
                        h.market
                    )));
                }
                if let Err(why) = h.check_shape() {
                    return Ok(Effects::Reject(format!("audit head: {why}")));
                }
                // The head is the record itself: kept in the hub's chain, under its market.
                uow.audit.push(audit_head_entry(origin, env, h, now));
                return Ok(Effects::Apply(uow));
            }
            other => {
                let kind = other.kind();
                return Ok(Effects::Reject(format!(
                    "a national system sends only pack-state, alert, alert-change, alert-comment and audit-head messages to the hub, not {kind}"
                )));
            }
        };
        uow.audit.push(self.national_entry(origin, env, ReturnCode::Success, &note, now));
        Ok(Effects::Apply(uow))
    }

    /// A multi-market pack changed state in `origin`: the message goes on, unchanged, to every
    /// other market of the pack's batch, in order with everything else about the product.
    async fn forward_pack_state(
        &self,
        origin: MarketCode,
        env: &Envelope,
        s: &PackStateMsg,
        uow: &mut HubUnitOfWork,
    ) -> Result<Result<String, String>, ApiError> {
        if s.market != origin.as_str() {
            return Ok(Err(format!("a change in market '{}' reported by {origin}", s.market)));
        }
        let scheme = match Scheme::parse(&s.scheme) {
            Ok(x) => x,
            Err(e) => return Ok(Err(format!("scheme '{}': {e}", s.scheme))),
        };
        let pc = match ProductCode::new(scheme, &s.product_code) {
            Ok(pc) => pc,
            Err(e) => return Ok(Err(format!("product_code '{}': {e}", s.product_code))),
        };
        let batch = match Batch::new(&s.batch) {
            Ok(b) => b,
            Err(e) => return Ok(Err(format!("batch '{}': {e}", s.batch))),
        };
        let Some(record) = self.store.batch(&pc, &batch).await? else {
            return Ok(Err(format!("batch {batch} of {pc} is unknown at the hub")));
        };
        if !record.markets.contains(&origin) {
            return Ok(Err(format!("batch {batch} of {pc} is not for {origin}")));
        }
        let others: Vec<MarketCode> = record.markets.iter().copied().filter(|m| *m != origin).collect();
        for m in &others {
            // The original id with the market keeps the forwarded copies unique in the outbox
            // and traceable to the message that caused them.
            let id = format!("{}-{m}", env.message_id);
            uow.outbox.push(message_to(*m, id, &pc, Message::PackState(s.clone())));
        }
        let names: Vec<&str> = others.iter().map(MarketCode::as_str).collect();
        Ok(Ok(format!("{} {} forwarded to [{}]", s.command, s.state, names.join(", "))))
    }

    /// An alert raised in `origin` (or, for an inter-market alert, sent by either market that
    /// holds it), for the OBP that owns the product: stored once under its id, queued for the
    /// OBP's callback if it set one, and copied to the other market that holds it.
    async fn store_alert(
        &self,
        origin: MarketCode,
        env: &Envelope,
        a: &AlertMsg,
        now: Timestamp,
        uow: &mut HubUnitOfWork,
    ) -> Result<Result<String, String>, ApiError> {
        if a.alert.id.is_empty() || a.alert.id.len() > 100 {
            return Ok(Err("the alert id must be 1 to 100 characters".into()));
        }
        // The OBP lists it and its callback carries it: it must read as an alert.
        let alert = match a.alert.to_alert() {
            Ok(x) => x,
            Err(why) => return Ok(Err(format!("the alert does not read: {why}"))),
        };
        if !alert.markets().contains(&origin) {
            return Ok(Err(format!("an alert of market '{}' forwarded by {origin}", a.alert.market)));
        }
        if !alert.code.goes_to_obp() {
            return Ok(Err(format!("a {} alert stays with the NMVO of its market", alert.code)));
        }
        // The hub's own record of who owns the product decides, not the market's copy of it.
        let owner = match self.find_product(&a.alert.product_code).await {
            Ok(Some(p)) => p.owner,
            Ok(None) | Err(_) => a.owner.as_str().into(),
        };
        let Some(obp) = self.store.obp(&owner).await? else {
            return Ok(Err(format!("OBP '{owner}' is not on-boarded")));
        };
        let id = alert.id.clone();
        let record = HubAlertRecord {
            id: id.clone(),
            obp: obp.id.clone(),
            market: alert.market,
            product_code: a.alert.product_code.clone(),
            alert: serde_json::to_string(&a.alert).expect("an alert view always serialises"),
            created_at: now,
            status: AlertStatus::Open,
            classification: None,
            comment: None,
            thread: Default::default(),
            version: 0,
        };
        if let Some(url) = &obp.callback_url {
            let event = crate::callback::alert_event(&crate::alerts::view(&record)?);
            uow.outbox.push(crate::callback::callback_message(
                obp.id.as_str(),
                format!("{id}-callback"),
                &a.alert.product_code,
                event,
            ));
            tracing::debug!(obp = %obp.id, %url, "alert queued for the callback");
        }
        for m in alert.markets().into_iter().filter(|m| *m != origin) {
            let copy = Message::Alert(AlertMsg { alert: a.alert.clone(), owner: obp.id.to_string() });
            let mid = format!("{}-{m}", env.message_id);
            uow.outbox.push(crate::message_keyed(m, mid, &a.alert.product_code, copy));
        }
        uow.alerts.push(record);
        Ok(Ok(format!("alert {id} for {}", obp.id)))
    }

    /// An audit record of a message from a national system, in the hub's chain. It names the
    /// message, never the serial: the hub keeps no serials (DR Art 33(1)).
    fn national_entry(
        &self,
        origin: MarketCode,
        env: &Envelope,
        code: ReturnCode,
        note: &str,
        now: Timestamp,
    ) -> Entry {
        Entry {
            market: HUB_AUDIT_MARKET.to_owned(),
            at_millis: now.unix_millis(),
            actor: origin.to_string(),
            role: "NATIONAL".to_owned(),
            location: String::new(),
            operation: format!("national-{}", env.body.kind()),
            subject: env.message_id.clone(),
            return_code: code.as_str().to_owned(),
            request: json!({"message_id": env.message_id, "ordering_key": env.ordering_key}).to_string(),
            result: json!({"note": note}).to_string(),
        }
    }
}

/// The operation of the hub's audit records that keep a national system's signed audit head.
pub const AUDIT_HEAD_OPERATION: &str = "audit-head";

/// The subject of the hub's audit records that keep `market`'s signed audit heads.
pub fn audit_head_subject(market: &str) -> String {
    format!("audit-head/{market}")
}

/// The hub's audit record of a signed audit head from `origin`: the head, exactly as received,
/// is the record's request, so that it can be read back ([`received_audit_heads`]) and checked
/// with the national system's public key. The hub itself cannot check the signature (it does not
/// hold the national systems' keys), only its shape; its own chain vouches that it was received.
fn audit_head_entry(origin: MarketCode, env: &Envelope, h: &SignedHead, now: Timestamp) -> Entry {
    Entry {
        market: HUB_AUDIT_MARKET.to_owned(),
        at_millis: now.unix_millis(),
        actor: origin.to_string(),
        role: "NATIONAL".to_owned(),
        location: String::new(),
        operation: AUDIT_HEAD_OPERATION.to_owned(),
        subject: audit_head_subject(&h.market),
        return_code: ReturnCode::Success.as_str().to_owned(),
        request: serde_json::to_string(h).expect("a signed head always serialises"),
        result: json!({"message_id": env.message_id}).to_string(),
    }
}

/// The latest signed audit head (the highest sequence number) the hub received from each market
/// (or from `market` alone), read back from the hub's own audit trail, ordered by market: what
/// `openmvs audit heads` prints, for `openmvs audit verify --heads` at the national system.
pub async fn received_audit_heads<S: AuditStore + ?Sized>(
    store: &S,
    market: Option<&str>,
) -> Result<Vec<SignedHead>, StoreError> {
    let mut latest: std::collections::BTreeMap<String, SignedHead> = std::collections::BTreeMap::new();
    let mut keep = |entry: &Entry| {
        if entry.operation != AUDIT_HEAD_OPERATION || entry.return_code != ReturnCode::Success.as_str() {
            return;
        }
        let Ok(h) = serde_json::from_str::<SignedHead>(&entry.request) else { return };
        if market.is_some_and(|m| m != h.market) {
            return;
        }
        if latest.get(&h.market).is_none_or(|old| h.seq > old.seq) {
            latest.insert(h.market.clone(), h);
        }
    };
    match market {
        Some(m) => {
            for r in store.audit_by_subject(&audit_head_subject(m)).await? {
                keep(&r.entry);
            }
        }
        None => {
            let mut after = 0;
            loop {
                let page = store.audit_page(after, 10_000).await?;
                let Some((last, _)) = page.last() else { break };
                after = *last;
                for (_, r) in &page {
                    keep(&r.entry);
                }
            }
        }
    }
    Ok(latest.into_values().collect())
}
