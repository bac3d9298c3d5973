//! Distribution: the relay delivers each market's due outbox messages through the
//! [`NationalLink`], with backoff for a market that is down and a dead-letter list for what a
//! market rejects. A market gets a product's messages in order (product, batch, serials, recall,
//! pack states): a round claims the oldest waiting message of every product first, then the
//! messages that follow them, as runs ([`openmvs_store::hub::HubOutboxStore::claim_runs`]), and
//! sends them in order in deliveries of at most [`DELIVERY_BYTES`]; a market applies a delivery
//! in order, and one that fails part-way is sent again whole (what was applied answers
//! `DUPLICATE`), so a product's later messages are never applied before its earlier ones. A product with a long backlog (the serials of a large
//! upload, the pack states piled up while a market was down) thus drains a round's worth of
//! messages per round trip, not one, and never holds back the first message of another product. The same relay posts the OBPs' callback
//! events (`callback.rs`). The rounds themselves are [`openmvs_store::relay::Relay`]'s, the
//! national systems' relay too; this module only says how a market is reached.

use std::sync::Arc;
use std::time::Duration;

use openmvs_core::ids::MarketCode;
use openmvs_store::relay::{Ack, HubDestination, Outcome, Relay, Round, Sender};
use openmvs_store::{BoxFuture, StoredOutboxMessage};
use openmvs_wire::hub::{Delivery, DeliveryAck, Envelope};
use tokio::sync::watch;

use crate::{ApiError, Hub, NationalLink};

pub use openmvs_store::retry::{MAX_BACKOFF, backoff};

/// Deliveries to one market per [`Hub::relay_once`], so that one round is bounded even with a
/// large backlog; the next round carries on.
const MAX_ROUNDS_PER_MARKET: usize = 64;

/// The most payload bytes of one delivery: a round whose messages weigh more is sent as several
/// deliveries, in order, so that no delivery runs into the link's timeout (a chunk of 10,000
/// serials weighs about 300 KB).
pub const DELIVERY_BYTES: usize = 4 * 1024 * 1024;

/// The answers of a delivery acknowledgement, by message id.
pub(crate) fn acks(ack: &DeliveryAck) -> Vec<Ack> {
    ack.results
        .iter()
        .map(|a| Ack {
            message_id: a.message_id.as_str().into(),
            outcome: Outcome::of_status(&a.status, a.error.as_deref()),
        })
        .collect()
}

/// Sends a market's messages, as envelopes, through the link: in order, in deliveries of at
/// most [`DELIVERY_BYTES`] of payload (and at least one message each).
struct MarketSender<'a> {
    hub: &'a Hub,
    link: &'a dyn NationalLink,
    market: MarketCode,
}

impl Sender for MarketSender<'_> {
    type Item = (Envelope, usize);

    fn prepare(&self, m: &StoredOutboxMessage) -> Result<(Envelope, usize), String> {
        let envelope =
            serde_json::from_str(&m.message.payload).map_err(|e| format!("payload does not decode: {e}"))?;
        Ok((envelope, m.message.payload.len()))
    }

    fn send(&self, items: Vec<(Envelope, usize)>) -> BoxFuture<'_, Result<Vec<Ack>, String>> {
        Box::pin(async move {
            let mut answered = Vec::with_capacity(items.len());
            for (n, messages) in deliveries(items, DELIVERY_BYTES).into_iter().enumerate() {
                let sent = self.hub.clock.now();
                let result = self.link.deliver(self.market, Delivery { messages }).await;
                let now = self.hub.clock.now();
                match &result {
                    Ok(_) => self.hub.links.delivered(self.market, sent, now),
                    Err(e) => self.hub.links.failed(self.market, now, e),
                }
                match result {
                    Ok(ack) => answered.extend(acks(&ack)),
                    // Nothing got through: the market is down.
                    Err(e) if n == 0 => return Err(e),
                    // The first deliveries were answered: what is left has no answer and waits
                    // for its retry, behind what was applied.
                    Err(e) => {
                        tracing::info!(market = %self.market, error = %e, "delivery cut short; the rest is retried");
                        break;
                    }
                }
            }
            Ok(answered)
        })
    }
}

/// `items` in order, cut into deliveries of at most `budget` payload bytes; a message heavier
/// than the budget goes alone.
fn deliveries<T>(items: Vec<(T, usize)>, budget: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut weight = 0;
    for (item, bytes) in items {
        match out.last_mut() {
            Some(last) if weight + bytes <= budget => {
                last.push(item);
                weight += bytes;
            }
            _ => {
                out.push(vec![item]);
                weight = bytes;
            }
        }
    }
    out
}

impl Hub {
    /// The retry policy and batch size of the hub's relays.
    pub(crate) fn relay_policy(&self) -> Relay {
        Relay {
            max_attempts: self.config.max_delivery_attempts,
            lease: self.config.lease,
            limit: self.config.max_delivery,
        }
    }

    /// One pass of the relay over every market with live messages: delivers what is due, in
    /// order, until each market has nothing due, is down, or had its share of rounds; then posts
    /// the OBPs' due callback events. The first pass of this process first resumes the outbox
    /// ([`openmvs_store::relay::Resumed`]). Returns how many messages were acknowledged (applied, or
    /// applied before, or answered 2xx by a callback).
    pub async fn relay_once(&self) -> Result<usize, ApiError> {
        self.relay_pass(&|| false).await
    }

    /// [`Hub::relay_once`], ending early, after the delivery in flight, once `stop` says so: a
    /// node shutting down finishes what it sent and leaves the rest of a backlog to the nodes
    /// that go on (the outbox is theirs too) or to its next start.
    async fn relay_pass(&self, stop: &(dyn Fn() -> bool + Sync)) -> Result<usize, ApiError> {
        // What the process before this one left waiting, to every destination, ends before the
        // first pass.
        self.relay_resumed.once(self.store.as_ref(), self.clock.now()).await?;
        let mut acked = 0;
        if let Some(link) = self.link.clone() {
            acked += self.relay_markets_once(link.as_ref(), stop).await?;
        }
        if stop() {
            return Ok(acked);
        }
        if let Some(sender) = self.callbacks.clone() {
            acked += self.relay_callbacks_once(sender.as_ref()).await?;
        }
        Ok(acked)
    }

    async fn relay_markets_once(
        &self,
        link: &dyn NationalLink,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<usize, ApiError> {
        let mut acked = 0;
        let relay = self.relay_policy();
        for destination in self.store.destinations().await? {
            // Callback destinations are the callback relay's.
            let Ok(market) = MarketCode::new(&destination) else { continue };
            let outbox = HubDestination { store: self.store.as_ref(), destination: &destination };
            let sender = MarketSender { hub: self, link, market };
            for _ in 0..MAX_ROUNDS_PER_MARKET {
                if stop() {
                    return Ok(acked);
                }
                match relay.round(&outbox, &sender, &destination, self.clock.now()).await? {
                    Round::Answered(n) => acked += n,
                    Round::Idle | Round::Down => break,
                }
            }
        }
        Ok(acked)
    }

    /// The relay: runs [`Hub::relay_once`] whenever messages are committed, and at least every
    /// half second for retries that come due, until `shutdown` turns true.
    pub async fn run_relay(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if self.link.is_none() && self.callbacks.is_none() {
            return;
        }
        loop {
            if *shutdown.borrow() {
                return;
            }
            let stopping = shutdown.clone();
            let acked = match self.relay_pass(&|| *stopping.borrow()).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "hub relay cannot read its outbox");
                    0
                }
            };
            if acked == 0 {
                tokio::select! {
                    _ = self.relay_wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    r = shutdown.changed() => if r.is_err() { return },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::deliveries;

    #[test]
    fn a_round_is_cut_into_deliveries_under_the_budget_in_order() {
        let items = vec![("a", 4), ("b", 4), ("c", 3), ("d", 9), ("e", 12), ("f", 1)];
        assert_eq!(deliveries(items, 10), vec![vec!["a", "b"], vec!["c"], vec!["d"], vec!["e"], vec!["f"]]);
        assert_eq!(deliveries(vec![("a", 1), ("b", 1)], 10), vec![vec!["a", "b"]]);
        assert!(deliveries(Vec::<(&str, usize)>::new(), 10).is_empty());
    }
}
