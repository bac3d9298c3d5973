//! Distribution: the relay delivers each market's due outbox messages through the
//! [`NationalLink`], one message per product at a time so that a market gets a product's
//! messages in order (product, batch, serials, recall), with backoff for a market that is down
//! and a dead-letter list for what a market rejects. The same relay posts the OBPs' callback
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

/// Sends a market's messages, as envelopes, through the link.
struct MarketSender<'a> {
    link: &'a dyn NationalLink,
    market: MarketCode,
}

impl Sender for MarketSender<'_> {
    type Item = Envelope;

    fn prepare(&self, m: &StoredOutboxMessage) -> Result<Envelope, String> {
        serde_json::from_str(&m.message.payload).map_err(|e| format!("payload does not decode: {e}"))
    }

    fn send(&self, items: Vec<Envelope>) -> BoxFuture<'_, Result<Vec<Ack>, String>> {
        Box::pin(async move {
            let ack = self.link.deliver(self.market, Delivery { messages: items }).await?;
            Ok(acks(&ack))
        })
    }
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
        // What the process before this one left waiting, to every destination, ends before the
        // first pass.
        self.relay_resumed.once(self.store.as_ref(), self.clock.now()).await?;
        let mut acked = 0;
        if let Some(link) = self.link.clone() {
            acked += self.relay_markets_once(link.as_ref()).await?;
        }
        if let Some(sender) = self.callbacks.clone() {
            acked += self.relay_callbacks_once(sender.as_ref()).await?;
        }
        Ok(acked)
    }

    async fn relay_markets_once(&self, link: &dyn NationalLink) -> Result<usize, ApiError> {
        let mut acked = 0;
        let relay = self.relay_policy();
        for destination in self.store.destinations().await? {
            // Callback destinations are the callback relay's.
            let Ok(market) = MarketCode::new(&destination) else { continue };
            let outbox =
                HubDestination { store: self.store.as_ref(), destination: &destination, runs: false };
            let sender = MarketSender { link, market };
            for _ in 0..MAX_ROUNDS_PER_MARKET {
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
            let acked = match self.relay_once().await {
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
