//! The outbox relay of every system, the national systems' (to the hub), the hub's (to each
//! market) and the hub's callbacks (to each OBP): one round claims a destination's due messages,
//! hands them to a [`Sender`], and books each answer: delivered messages leave the outbox, a
//! rejected one (or one whose payload cannot be sent at all) goes to the dead letters at once,
//! and the rest are tried again after [`crate::retry::backoff`], until the attempts run out.
//!
//! A process's relay starts with [`Resumed::once`]: every wait its outbox holds from before the
//! start (the leases of claims a killed process never booked, the backoffs of destinations that
//! were down) ends, so the first round offers every live message, instead of a product's
//! messages queuing for up to a lease behind a claim nobody holds any more.
//!
//! Time comes in as an argument and the sender is a trait, so a round is tested with a fixed
//! instant and a fake sender, without sleeping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openmvs_core::time::Timestamp;

use crate::retry::backoff;
use crate::{BoxFuture, MessageId, OutboxQueue, StoreResult, StoredOutboxMessage};

/// Whether this process's relay has resumed its outbox ([`OutboxQueue::resume`]), which it does
/// once, before its first round.
#[derive(Debug, Default)]
pub struct Resumed(AtomicBool);

impl Resumed {
    /// Resumes `queue` at `now` the first time it is called (again after a store failure).
    ///
    /// A lease names no holder, so a process cannot tell the claims of the process it replaces
    /// from those of a live node sharing the store: it ends them all. The live node's messages
    /// are then sent twice at most, and a receiver applies a message id once; the order of a
    /// key's messages holds, since a key's next message is handed out only once the one before it
    /// is delivered.
    ///
    /// # Errors
    ///
    /// A store failure.
    pub async fn once<Q: OutboxQueue + ?Sized>(&self, queue: &Q, now: Timestamp) -> StoreResult<()> {
        if self.0.load(Ordering::Acquire) {
            return Ok(());
        }
        let n = queue.resume(now).await?;
        if n > 0 {
            tracing::info!(
                messages = n,
                "outbox resumed: claims and retry waits from before the start end now"
            );
        }
        self.0.store(true, Ordering::Release);
        Ok(())
    }
}

/// One destination's outbox, as the relay uses it.
pub trait Outbox: Send + Sync {
    /// Claims up to `limit` due messages, as runs of their ordering keys, until
    /// `lease_until`: a relay on another node sharing the store skips them until then.
    fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>>;
    /// Removes a delivered message.
    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>>;
    /// Records a failed attempt: retry at `next_attempt_at`, or move to the dead-letter list.
    fn failed(
        &self,
        seq: u64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> BoxFuture<'_, StoreResult<()>>;
}

/// What became of one message a [`Sender`] was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (or applied before): it leaves the outbox.
    Delivered,
    /// Refused for good: it goes to the dead letters at once.
    Rejected(String),
    /// Not acknowledged: tried again after its backoff.
    Retry(String),
    /// Not sent at all this round: it stays claimed until its lease ends.
    Unsent,
}

impl Outcome {
    /// The outcome a delivery acknowledgement's status word means: `APPLIED` and `DUPLICATE`
    /// delivered, `REJECTED` rejected (with the receiver's reason), anything else not
    /// acknowledged.
    pub fn of_status(status: &str, error: Option<&str>) -> Outcome {
        match status {
            "APPLIED" | "DUPLICATE" => Outcome::Delivered,
            "REJECTED" => Outcome::Rejected(error.unwrap_or("rejected").to_owned()),
            _ => Outcome::Retry("no acknowledgement".to_owned()),
        }
    }
}

/// The answer about one message, by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The message's id.
    pub message_id: MessageId,
    /// What became of it.
    pub outcome: Outcome,
}

/// How a relay's messages reach their destination.
pub trait Sender: Send + Sync {
    /// A message ready to send (a decoded envelope, a signed event...).
    type Item: Send;
    /// Prepares a claimed message; an error means it can never be sent: a dead letter at once.
    fn prepare(&self, m: &StoredOutboxMessage) -> Result<Self::Item, String>;
    /// Sends prepared messages in order and answers for each by id; a message without an
    /// answer is not acknowledged. An error means the destination could not be reached: every
    /// message is tried again.
    fn send(&self, items: Vec<Self::Item>) -> BoxFuture<'_, Result<Vec<Ack>, String>>;
}

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Nothing was due.
    Idle,
    /// Messages were sent and answered (this many delivered); more may be due.
    Answered(usize),
    /// The destination could not be reached: its messages wait for their backoff.
    Down,
}

/// The retry policy and batch size of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relay {
    /// Delivery attempts before a message is moved to the dead letters.
    pub max_attempts: u32,
    /// How long a claim holds messages from other nodes' relays.
    pub lease: Duration,
    /// The most messages of one round.
    pub limit: usize,
}

impl Relay {
    /// One round for one destination at `now`: claims its due messages, sends them and books
    /// each answer.
    ///
    /// # Errors
    ///
    /// A store failure; what was booked before it stays booked.
    pub async fn round<O, S>(
        &self,
        outbox: &O,
        sender: &S,
        destination: &str,
        now: Timestamp,
    ) -> StoreResult<Round>
    where
        O: Outbox + ?Sized,
        S: Sender + ?Sized,
    {
        let due = outbox.claim_due(now, now.plus(self.lease), self.limit).await?;
        if due.is_empty() {
            return Ok(Round::Idle);
        }
        let mut items = Vec::with_capacity(due.len());
        let mut sent: Vec<&StoredOutboxMessage> = Vec::with_capacity(due.len());
        for m in &due {
            match sender.prepare(m) {
                Ok(item) => {
                    items.push(item);
                    sent.push(m);
                }
                // It will never be sent: a dead letter at once, not a retry forever.
                Err(why) => outbox.failed(m.seq, &why, now, true).await?,
            }
        }
        if sent.is_empty() {
            return Ok(Round::Answered(0));
        }
        let acks = match sender.send(items).await {
            Ok(acks) => acks,
            Err(e) => {
                tracing::info!(%destination, error = %e, "destination unreachable; retrying later");
                for m in &sent {
                    self.retry_later(outbox, m, &e, now).await?;
                }
                return Ok(Round::Down);
            }
        };
        let mut delivered = 0;
        for m in &sent {
            let outcome = acks
                .iter()
                .find(|a| a.message_id == m.message.message_id)
                .map_or_else(|| Outcome::Retry("no acknowledgement".to_owned()), |a| a.outcome.clone());
            match outcome {
                Outcome::Delivered => {
                    outbox.delivered(m.seq).await?;
                    delivered += 1;
                }
                Outcome::Rejected(why) => {
                    tracing::warn!(%destination, message = %m.message.message_id, reason = %why, "message rejected");
                    outbox.failed(m.seq, &why, now, true).await?;
                }
                Outcome::Retry(why) => self.retry_later(outbox, m, &why, now).await?,
                Outcome::Unsent => {}
            }
        }
        Ok(Round::Answered(delivered))
    }

    /// Books a failed attempt: again after the backoff, or a dead letter once the attempts run out.
    async fn retry_later<O: Outbox + ?Sized>(
        &self,
        outbox: &O,
        m: &StoredOutboxMessage,
        why: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let dead = m.attempts + 1 >= self.max_attempts;
        outbox.failed(m.seq, why, now.plus(backoff(m.attempts)), dead).await
    }
}

/// A national system's outbox: one destination, the hub.
impl<T: crate::OutboxStore + ?Sized> Outbox for T {
    fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        crate::OutboxStore::claim_runs(self, now, lease_until, limit)
    }

    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        crate::OutboxStore::delivered(self, seq)
    }

    fn failed(
        &self,
        seq: u64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> BoxFuture<'_, StoreResult<()>> {
        OutboxQueue::failed(self, seq, error, next_attempt_at, dead)
    }
}

/// One destination of the hub's outbox (a market, or an OBP's callback).
pub struct HubDestination<'a> {
    /// The hub's outbox.
    pub store: &'a dyn crate::hub::HubOutboxStore,
    /// The destination.
    pub destination: &'a str,
}

impl Outbox for HubDestination<'_> {
    fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
        self.store.claim_runs(self.destination, now, lease_until, limit)
    }

    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        self.store.delivered(seq)
    }

    fn failed(
        &self,
        seq: u64,
        error: &str,
        next_attempt_at: Timestamp,
        dead: bool,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.store.failed(seq, error, next_attempt_at, dead)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::OutboxMessage;

    /// An outbox in memory: messages due by `next_attempt_at`, booked calls recorded.
    #[derive(Default)]
    struct FakeOutbox {
        messages: Mutex<Vec<StoredOutboxMessage>>,
    }

    impl FakeOutbox {
        fn with(ids: &[&str], attempts: u32) -> FakeOutbox {
            let at = Timestamp::from_unix_millis(0);
            let messages = ids
                .iter()
                .enumerate()
                .map(|(i, id)| StoredOutboxMessage {
                    seq: i as u64 + 1,
                    message: OutboxMessage {
                        message_id: (*id).into(),
                        destination: "DE".into(),
                        kind: "k".into(),
                        ordering_key: (*id).to_owned(),
                        payload: (*id).to_owned(),
                    },
                    created_at: at,
                    attempts,
                    next_attempt_at: at,
                    last_error: None,
                    dead: false,
                })
                .collect();
            FakeOutbox { messages: Mutex::new(messages) }
        }

        fn get(&self, id: &str) -> Option<StoredOutboxMessage> {
            self.messages.lock().unwrap().iter().find(|m| m.message.message_id == id).cloned()
        }
    }

    impl FakeOutbox {
        fn claim(&self, now: Timestamp, lease_until: Timestamp, limit: usize) -> Vec<StoredOutboxMessage> {
            let mut ms = self.messages.lock().unwrap();
            let due: Vec<&mut StoredOutboxMessage> =
                ms.iter_mut().filter(|m| !m.dead && m.next_attempt_at <= now).take(limit).collect();
            due.into_iter()
                .map(|m| {
                    let claimed = m.clone();
                    m.next_attempt_at = lease_until;
                    claimed
                })
                .collect()
        }

        fn fail(&self, seq: u64, error: &str, next_attempt_at: Timestamp, dead: bool) {
            let mut ms = self.messages.lock().unwrap();
            let m = ms.iter_mut().find(|m| m.seq == seq).unwrap();
            m.attempts += 1;
            m.last_error = Some(error.to_owned());
            m.next_attempt_at = next_attempt_at;
            m.dead = dead;
        }
    }

    fn ready<T: Send + 'static>(v: T) -> BoxFuture<'static, StoreResult<T>> {
        Box::pin(std::future::ready(Ok(v)))
    }

    impl Outbox for FakeOutbox {
        fn claim_due(
            &self,
            now: Timestamp,
            lease_until: Timestamp,
            limit: usize,
        ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>> {
            ready(self.claim(now, lease_until, limit))
        }

        fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
            self.messages.lock().unwrap().retain(|m| m.seq != seq);
            ready(())
        }

        fn failed(
            &self,
            seq: u64,
            error: &str,
            next_attempt_at: Timestamp,
            dead: bool,
        ) -> BoxFuture<'_, StoreResult<()>> {
            self.fail(seq, error, next_attempt_at, dead);
            ready(())
        }
    }

    /// A sender answering from a script: `Err` for "unreachable", else the outcome per id;
    /// payloads starting with `bad` do not prepare.
    struct FakeSender {
        answer: Result<Vec<(&'static str, Outcome)>, String>,
        sent: Mutex<Vec<String>>,
    }

    impl FakeSender {
        fn new(answer: Result<Vec<(&'static str, Outcome)>, String>) -> FakeSender {
            FakeSender { answer, sent: Mutex::new(Vec::new()) }
        }
    }

    impl Sender for FakeSender {
        type Item = String;

        fn prepare(&self, m: &StoredOutboxMessage) -> Result<String, String> {
            if m.message.payload.starts_with("bad") {
                return Err("payload does not decode".into());
            }
            Ok(m.message.payload.clone())
        }

        fn send(&self, items: Vec<String>) -> BoxFuture<'_, Result<Vec<Ack>, String>> {
            self.sent.lock().unwrap().extend(items);
            let answer = self.answer.clone().map(|acks| {
                acks.into_iter().map(|(id, outcome)| Ack { message_id: id.into(), outcome }).collect()
            });
            Box::pin(std::future::ready(answer))
        }
    }

    const RELAY: Relay = Relay { max_attempts: 3, lease: Duration::from_secs(30), limit: 10 };

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1000)
    }

    /// Runs a round to its end: the fakes never wait, so it is ready at the first poll.
    fn run<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a round with fakes never waits"),
        }
    }

    #[test]
    fn delivered_messages_leave_rejected_ones_die_and_the_rest_wait_their_backoff() {
        let outbox = FakeOutbox::with(&["a", "b", "c", "d"], 0);
        let sender = FakeSender::new(Ok(vec![
            ("a", Outcome::of_status("APPLIED", None)),
            ("b", Outcome::of_status("REJECTED", Some("unknown product"))),
            ("c", Outcome::of_status("DUPLICATE", None)),
        ]));
        let round = run(RELAY.round(&outbox, &sender, "DE", at(100))).unwrap();
        assert_eq!(round, Round::Answered(2));
        assert!(outbox.get("a").is_none() && outbox.get("c").is_none());
        let b = outbox.get("b").unwrap();
        assert!(b.dead);
        assert_eq!(b.last_error.as_deref(), Some("unknown product"));
        // No answer about d: not acknowledged, again after 1 s.
        let d = outbox.get("d").unwrap();
        assert_eq!(
            (d.dead, d.next_attempt_at, d.last_error.as_deref()),
            (false, at(101), Some("no acknowledgement"))
        );
    }

    #[test]
    fn an_unreachable_destination_backs_off_and_a_message_dies_when_its_attempts_run_out() {
        let outbox = FakeOutbox::with(&["a"], 0);
        let down = FakeSender::new(Err("connection refused".into()));
        assert_eq!(run(RELAY.round(&outbox, &down, "DE", at(0))).unwrap(), Round::Down);
        assert_eq!(outbox.get("a").unwrap().next_attempt_at, at(1));
        // Not due before its backoff ends.
        assert_eq!(run(RELAY.round(&outbox, &down, "DE", at(0))).unwrap(), Round::Idle);
        assert_eq!(run(RELAY.round(&outbox, &down, "DE", at(1))).unwrap(), Round::Down);
        assert_eq!(outbox.get("a").unwrap().next_attempt_at, at(3), "the wait doubles");
        assert_eq!(run(RELAY.round(&outbox, &down, "DE", at(3))).unwrap(), Round::Down);
        let a = outbox.get("a").unwrap();
        assert!(a.dead, "the third failed attempt of three is the last: {a:?}");
        assert_eq!(run(RELAY.round(&outbox, &down, "DE", at(3600))).unwrap(), Round::Idle);
    }

    #[test]
    fn a_message_that_cannot_be_prepared_is_a_dead_letter_at_once_and_is_not_sent() {
        let outbox = FakeOutbox::with(&["bad-1", "ok"], 0);
        let sender = FakeSender::new(Ok(vec![("ok", Outcome::Delivered)]));
        assert_eq!(run(RELAY.round(&outbox, &sender, "DE", at(0))).unwrap(), Round::Answered(1));
        assert!(outbox.get("bad-1").unwrap().dead);
        assert_eq!(*sender.sent.lock().unwrap(), ["ok"]);
        let only_bad = FakeOutbox::with(&["bad-2"], 0);
        assert_eq!(run(RELAY.round(&only_bad, &sender, "DE", at(0))).unwrap(), Round::Answered(0));
    }

    #[test]
    fn an_unsent_message_keeps_its_claim_and_its_attempts() {
        let outbox = FakeOutbox::with(&["a", "b"], 0);
        let sender =
            FakeSender::new(Ok(vec![("a", Outcome::Retry("answered 500".into())), ("b", Outcome::Unsent)]));
        assert_eq!(run(RELAY.round(&outbox, &sender, "obp", at(0))).unwrap(), Round::Answered(0));
        let (a, b) = (outbox.get("a").unwrap(), outbox.get("b").unwrap());
        assert_eq!((a.attempts, a.next_attempt_at), (1, at(1)));
        assert_eq!((b.attempts, b.next_attempt_at), (0, at(30)), "held by its lease only");
    }
}
