//! OBP callbacks (api.md §3 `PUT /v1/callback`): the hub POSTs each new alert, recall and
//! withdrawal event to the URL the OBP set, signed with HMAC-SHA256 under a secret only the hub
//! and that OBP know, and retries with backoff until a 2xx acknowledges it.
//!
//! Events are batched: one POST carries every event due for the OBP, up to
//! [`MAX_EVENTS_PER_CALLBACK`], as `{"events": [{"event_id": "...", "event": "alert", ...}, ...]}`
//! in the order they happened (per product), and a 2xx acknowledges them all. A storm of alerts
//! is a few calls, not one call per alert. `event_id` is the same on every retry, so an OBP that
//! got a batch but whose answer was lost can tell the events it has seen.
//!
//! Events wait in the outbox under the destination `callback:<obp>`, written in the same unit of
//! work as the alert, recall or withdrawal itself, so that none is lost and none is sent twice.
//!
//! The secret is not stored: it is derived from the hub's key, the OBP and the URL (HMAC with a
//! label of its own, so it says nothing about the serial digests made with the same key). Setting
//! the same URL again gives the same secret; setting another URL gives a new one, which is how an
//! OBP rotates it.

use openmvs_core::alert::AlertView;
use openmvs_core::answer::CallbackAnswer;
use openmvs_core::return_code::ReturnCode;
use openmvs_store::OutboxMessage;
use openmvs_store::hub::{HubUnitOfWork, ObpChange};
use openmvs_store::relay::{Ack, HubDestination, Outcome, Relay, Round, Sender as RelaySender};
use openmvs_store::{BoxFuture, MessageId, StoredOutboxMessage};
use openmvs_wire::kept;
use serde_json::{Value, json};

use crate::{ApiError, Hub, Record, hmac_sha256};

/// The longest callback URL, in characters.
pub const MAX_CALLBACK_URL: usize = 2000;

/// The most events one callback POST carries (about 40 KB of JSON at the most).
pub const MAX_EVENTS_PER_CALLBACK: usize = 100;

/// The HTTP header that carries the signature of a callback body.
pub const SIGNATURE_HEADER: &str = "x-openmvs-signature";

/// The prefix of an OBP's callback destination in the outbox: `callback:<obp>`.
const DESTINATION_PREFIX: &str = "callback:";

/// The label that keeps callback secrets apart from every other use of the hub's key.
const SECRET_LABEL: &[u8] = b"openmvs callback secret v1";

/// How the hub POSTs a batch of events to an OBP's callback URL.
pub trait CallbackSender: Send + Sync {
    /// POSTs `body` (JSON) to `url` with `signature` in the [`SIGNATURE_HEADER`] header and
    /// answers the HTTP status; an error means no status came back. The sender enforces its own
    /// timeout, so that an OBP that hangs holds up the relay only that long.
    fn post(&self, url: &str, body: String, signature: String) -> BoxFuture<'_, Result<u16, String>>;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a callback URL: `https://`, a host, no whitespace or control characters, at most
/// [`MAX_CALLBACK_URL`] characters. Events carry alert details, so they never travel in clear.
fn check_url(url: &str) -> Result<(), String> {
    let n = url.chars().count();
    if n > MAX_CALLBACK_URL {
        return Err(format!("is {n} characters long, at most {MAX_CALLBACK_URL}"));
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("must start with https://".into());
    };
    if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("contains {c:?}"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("names no host".into());
    }
    Ok(())
}

/// The callback event of a new alert.
pub(crate) fn alert_event(alert: &AlertView) -> Value {
    json!({"event": "alert", "alert": kept::alert_value(alert)})
}

/// The callback event of a recall.
pub(crate) fn recall_event(
    product_code: &str,
    batch: &str,
    markets: &[&str],
    reason: &str,
    at: &str,
) -> Value {
    json!({"event": "recall", "product_code": product_code, "batch": batch, "markets": markets,
        "reason": reason, "at": at})
}

/// The callback event of a withdrawal.
pub(crate) fn withdrawal_event(product_code: &str, markets: &[&str], reason: &str, at: &str) -> Value {
    json!({"event": "withdrawal", "product_code": product_code, "markets": markets, "reason": reason,
        "at": at})
}

/// An outbox message carrying `event` to the callback of `obp`, in order with the product's other
/// events.
pub(crate) fn callback_message(
    obp: &str,
    message_id: String,
    ordering_key: &str,
    event: Value,
) -> OutboxMessage {
    OutboxMessage {
        message_id: message_id.into(),
        destination: format!("{DESTINATION_PREFIX}{obp}"),
        kind: event["event"].as_str().unwrap_or("event").to_owned(),
        ordering_key: ordering_key.to_owned(),
        payload: event.to_string(),
    }
}

impl Hub {
    /// `PUT /v1/callback`: sets where the hub POSTs the OBP's alert, recall and withdrawal events,
    /// and answers the secret their signatures are made with ([`Hub::sign_callback`]).
    pub async fn set_callback(&self, obp: &str, url: &str) -> Result<CallbackAnswer, ApiError> {
        self.caller(obp).await?;
        let request = json!({"url": url});
        if let Err(why) = check_url(url) {
            let e = ApiError::malformed("url", why);
            return Err(self.refuse(obp, "set-callback", obp, &request, e).await);
        }
        let now = self.clock.now();
        // The secret stays out of the audit trail: whoever reads the trail could forge events.
        let r = Record {
            operation: "set-callback",
            subject: obp,
            code: ReturnCode::Success,
            request: &request,
            result: &json!({}),
        };
        let uow = HubUnitOfWork {
            obp_changes: vec![ObpChange::Callback { obp: obp.into(), url: Some(url.to_owned()) }],
            audit: vec![self.entry(obp, now, r)],
            ..HubUnitOfWork::default()
        };
        self.commit(uow).await?;
        Ok(CallbackAnswer { url: url.to_owned(), secret: self.callback_secret(obp, url) })
    }

    /// The secret of `obp`'s callback at `url`.
    fn callback_secret(&self, obp: &str, url: &str) -> String {
        hex(&hmac_sha256(
            &self.config.serial_key,
            &[SECRET_LABEL, &[0], obp.as_bytes(), &[0], url.as_bytes()],
        ))
    }

    /// The signature of a callback `body` under `secret`: hex HMAC-SHA256, keyed with the secret's
    /// characters. The OBP computes the same to check that an event comes from the hub.
    pub fn sign_callback(secret: &str, body: &str) -> String {
        hex(&hmac_sha256(secret.as_bytes(), &[body.as_bytes()]))
    }

    /// One pass over every OBP with due events: POSTs them in one batch per OBP, deletes what a
    /// 2xx acknowledged and schedules the batch again with backoff otherwise. Returns how many
    /// events were acknowledged.
    pub(crate) async fn relay_callbacks_once(&self, sender: &dyn CallbackSender) -> Result<usize, ApiError> {
        let mut acked = 0;
        let relay = Relay { limit: MAX_EVENTS_PER_CALLBACK, ..self.relay_policy() };
        for destination in self.store.destinations().await? {
            let Some(obp) = destination.strip_prefix(DESTINATION_PREFIX) else { continue };
            // Without a URL (the OBP cleared it) the events wait for the next one.
            let Some(url) = self.store.obp(&obp.into()).await?.and_then(|o| o.callback_url) else { continue };
            let secret = self.callback_secret(obp, &url);
            // Runs: many events of one product in one batch, still in order.
            let outbox = HubDestination { store: self.store.as_ref(), destination: &destination };
            let poster = CallbackPoster { sender, url: &url, secret: &secret, destination: &destination };
            if let Round::Answered(n) = relay.round(&outbox, &poster, &destination, self.clock.now()).await? {
                acked += n;
            }
        }
        Ok(acked)
    }
}

/// Posts an OBP's due events in one signed batch: all acknowledged by a 2xx, or all retried.
struct CallbackPoster<'a> {
    sender: &'a dyn CallbackSender,
    url: &'a str,
    secret: &'a str,
    destination: &'a str,
}

/// The body of a callback POST: the events in order, each with its `event_id`.
fn batch_body(events: &[(MessageId, Value)]) -> String {
    json!({"events": events.iter().map(|(_, e)| e).collect::<Vec<_>>()}).to_string()
}

impl RelaySender for CallbackPoster<'_> {
    /// The message id and the event, with its `event_id`.
    type Item = (MessageId, Value);

    fn prepare(&self, m: &StoredOutboxMessage) -> Result<(MessageId, Value), String> {
        let mut event: Value =
            serde_json::from_str(&m.message.payload).map_err(|e| format!("the event does not read: {e}"))?;
        let Some(fields) = event.as_object_mut() else { return Err("the event is not an object".into()) };
        fields.insert("event_id".into(), Value::String(m.message.message_id.as_str().to_owned()));
        Ok((m.message.message_id.clone(), event))
    }

    fn send(&self, items: Vec<(MessageId, Value)>) -> BoxFuture<'_, Result<Vec<Ack>, String>> {
        Box::pin(async move {
            let body = batch_body(&items);
            let signature = Hub::sign_callback(self.secret, &body);
            let outcome = match self.sender.post(self.url, body, signature).await {
                Ok(status) if (200..300).contains(&status) => Outcome::Delivered,
                Ok(status) => Outcome::Retry(format!("the callback answered {status}")),
                Err(e) => Outcome::Retry(e),
            };
            if let Outcome::Retry(why) = &outcome {
                tracing::info!(destination = %self.destination, events = items.len(), error = %why,
                    "callback not acknowledged; retrying later");
            }
            Ok(items
                .into_iter()
                .map(|(message_id, _)| Ack { message_id, outcome: outcome.clone() })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_url_must_be_https_with_a_host_and_at_most_2000_characters() {
        assert!(check_url("https://obp.example/hooks/fmd").is_ok());
        assert!(check_url("https://obp.example:8443").is_ok());
        assert!(check_url("http://obp.example/hooks").is_err());
        assert!(check_url("https:///hooks").is_err());
        assert!(check_url("https://obp.example/a b").is_err());
        let long = format!("https://obp.example/{}", "a".repeat(MAX_CALLBACK_URL));
        assert!(check_url(&long).unwrap_err().contains("at most 2000"));
    }

    #[test]
    fn a_signature_is_the_hex_hmac_of_the_body_under_the_secret() {
        let s = Hub::sign_callback("Jefe", "what do ya want for nothing?");
        assert_eq!(s, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
