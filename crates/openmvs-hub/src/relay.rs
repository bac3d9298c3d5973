//! Distribution: the relay delivers each market's due outbox messages through the
//! [`NationalLink`], one message per product at a time so that a market gets a product's
//! messages in order (product, batch, serials, recall), with backoff for a market that is down
//! and a dead-letter list for what a market rejects. The same relay posts the OBPs' callback
//! events (`callback.rs`).

use std::sync::Arc;
use std::time::Duration;

use openmvs_core::ids::MarketCode;
use openmvs_core::time::Timestamp;
use openmvs_store::StoredOutboxMessage;
use openmvs_wire::hub::{Delivery, Envelope};
use tokio::sync::watch;

use crate::{ApiError, Hub, NationalLink};

pub use openmvs_store::retry::{MAX_BACKOFF, backoff};

/// Deliveries to one market per [`Hub::relay_once`], so that one round is bounded even with a
/// large backlog; the next round carries on.
const MAX_ROUNDS_PER_MARKET: usize = 64;

/// What one delivery to a market did.
enum Round {
    /// Nothing was due.
    Idle,
    /// Messages were sent and answered; more may be due.
    Answered(usize),
    /// The market could not be reached: its messages wait for their backoff.
    Down,
}

impl Hub {
    /// One pass of the relay over every market with live messages: delivers what is due, in
    /// order, until each market has nothing due, is down, or had its share of rounds; then posts
    /// the OBPs' due callback events. Returns how many messages were acknowledged (applied, or
    /// applied before, or answered 2xx by a callback).
    pub async fn relay_once(&self) -> Result<usize, ApiError> {
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
        for destination in self.store.destinations().await? {
            // Callback destinations are the callback relay's.
            let Ok(market) = MarketCode::new(&destination) else { continue };
            for _ in 0..MAX_ROUNDS_PER_MARKET {
                match self.deliver_round(link, market).await? {
                    Round::Answered(n) => acked += n,
                    Round::Idle | Round::Down => break,
                }
            }
        }
        Ok(acked)
    }

    /// Delivers the due messages of one market once and books each answer.
    async fn deliver_round(&self, link: &dyn NationalLink, market: MarketCode) -> Result<Round, ApiError> {
        let now = self.clock.now();
        // Claimed, not just read: another hub node's relay skips these until the lease ends.
        let due = self
            .store
            .claim_due(market.as_str(), now, now.plus(self.config.lease), self.config.max_delivery)
            .await?;
        if due.is_empty() {
            return Ok(Round::Idle);
        }
        let mut envelopes = Vec::with_capacity(due.len());
        let mut sent: Vec<&StoredOutboxMessage> = Vec::with_capacity(due.len());
        for m in &due {
            match serde_json::from_str::<Envelope>(&m.message.payload) {
                Ok(e) => {
                    envelopes.push(e);
                    sent.push(m);
                }
                // It will never decode: a dead letter at once, not a retry forever.
                Err(e) => {
                    self.store.failed(m.seq, &format!("payload does not decode: {e}"), now, true).await?;
                }
            }
        }
        if sent.is_empty() {
            return Ok(Round::Answered(0));
        }
        match link.deliver(market, Delivery { messages: envelopes }).await {
            Ok(ack) => {
                let mut acked = 0;
                for m in &sent {
                    let a = ack.results.iter().find(|a| a.message_id == m.message.message_id);
                    match a.map(|a| (a.status.as_str(), a.error.clone())) {
                        Some(("APPLIED" | "DUPLICATE", _)) => {
                            // Deletes the message, and with a serial chunk its serials, and
                            // counts the market's acknowledgement of the upload.
                            self.store.delivered(m.seq).await?;
                            acked += 1;
                        }
                        Some(("REJECTED", why)) => {
                            let why = why.unwrap_or_else(|| "rejected".into());
                            tracing::warn!(%market, message = %m.message.message_id, reason = %why, "message rejected");
                            self.store.failed(m.seq, &why, now, true).await?;
                        }
                        _ => self.retry_later(m, "no acknowledgement", now).await?,
                    }
                }
                Ok(Round::Answered(acked))
            }
            Err(e) => {
                tracing::info!(%market, error = %e, "national system unreachable; retrying later");
                for m in &sent {
                    self.retry_later(m, &e, now).await?;
                }
                Ok(Round::Down)
            }
        }
    }

    pub(crate) async fn retry_later(
        &self,
        m: &StoredOutboxMessage,
        why: &str,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let dead = m.attempts + 1 >= self.config.max_delivery_attempts;
        self.store.failed(m.seq, why, now.plus(backoff(m.attempts)), dead).await?;
        Ok(())
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
