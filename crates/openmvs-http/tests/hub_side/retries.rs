//! Delivery failures: 503 answers retried after a doubling backoff on the fake clock, a lost
//! answer redelivered and counted once, rejections moved to the dead letters and replayed.
//! These tests drive the relay one round at a time.

use std::collections::HashSet;
use std::time::Duration;

use openmvs_core::time::Clock;
use openmvs_national::hub::backoff;
use openmvs_store::{Committer, OutboxMessage, OutboxQueue, OutboxStore, StoredOutboxMessage, UnitOfWork};

use crate::fake_hub::DeliveryMode;
use crate::harness::*;
use crate::pki::client;
use crate::retry::SendRetrying;

fn manual() -> Setup {
    Setup { relay: false, ..Setup::default() }
}

/// A multi-market pack supplied here: one pack-state message waits in the outbox.
async fn one_pending(h: &Harness, pc: &str) -> StoredOutboxMessage {
    h.seed(pc, "B1", &["DE", "FR"], &["S1", "S2"]).await;
    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", pc, "B1", "S1").await;
    assert!(r.accepted, "{r:?}");
    let due = h.store.due(h.clock.now(), 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    due.into_iter().next().unwrap()
}

/// The live message `seq`, due or not.
async fn live(h: &Harness, seq: u64) -> StoredOutboxMessage {
    let later = h.clock.now().plus(Duration::from_secs(24 * 3600));
    h.store.due(later, 100).await.unwrap().into_iter().find(|m| m.seq == seq).expect("still in the outbox")
}

fn times_at_hub(h: &Harness, message_id: &str) -> usize {
    h.hub.applied().iter().filter(|e| e.message_id == message_id).count()
}

#[tokio::test]
async fn a_message_the_hub_answers_503_stays_pending_and_is_retried_after_a_doubling_backoff() {
    let h = Harness::with(manual()).await;
    let pc = gtin("0950110157000");
    let m = one_pending(&h, &pc).await;
    h.hub.set_delivery(DeliveryMode::Unavailable);
    let t0 = h.clock.now();

    assert_eq!(h.relay_once().await, 0);
    let after_1 = live(&h, m.seq).await;
    assert_eq!(after_1.attempts, 1);
    assert!(after_1.last_error.as_deref().unwrap_or_default().contains("503"), "{after_1:?}");
    assert_eq!(after_1.next_attempt_at, t0.plus(backoff(0)));
    assert_eq!(h.store.pending().await.unwrap(), 1, "not lost");

    // Not due yet: nothing is sent.
    assert_eq!(h.relay_once().await, 0);
    assert_eq!(h.hub.deliveries().len(), 1);

    h.clock.advance(backoff(0));
    assert_eq!(h.relay_once().await, 0);
    let after_2 = live(&h, m.seq).await;
    assert_eq!(after_2.attempts, 2);
    assert_eq!(after_2.next_attempt_at, t0.plus(backoff(0)).plus(backoff(1)), "the wait doubles");
    assert_eq!(h.hub.deliveries().len(), 2);

    h.hub.set_delivery(DeliveryMode::Apply);
    h.clock.advance(backoff(1) - Duration::from_millis(1));
    assert_eq!(h.relay_once().await, 0, "one millisecond early");
    assert_eq!(h.hub.deliveries().len(), 2);
    h.clock.advance(Duration::from_millis(1));
    assert_eq!(h.relay_once().await, 1);

    assert_eq!(times_at_hub(&h, m.message.message_id.as_str()), 1, "delivered exactly once");
    assert_eq!(h.store.pending().await.unwrap(), 0);
    assert!(h.store.dead_letters().await.unwrap().is_empty());
    assert_eq!(h.relay_once().await, 0, "and not again");
    assert_eq!(h.hub.deliveries().len(), 3);
}

#[tokio::test]
async fn a_delivery_whose_answer_is_lost_is_redelivered_and_applied_once() {
    let h = Harness::with(manual()).await;
    let pc = gtin("0950110157001");
    let m = one_pending(&h, &pc).await;
    h.hub.set_delivery(DeliveryMode::ApplyThenDrop);

    assert_eq!(h.relay_once().await, 0);
    assert_eq!(times_at_hub(&h, m.message.message_id.as_str()), 1, "the hub applied it");
    let after = live(&h, m.seq).await;
    assert_eq!(after.attempts, 1);
    assert!(after.last_error.is_some());

    h.hub.set_delivery(DeliveryMode::Apply);
    h.clock.advance(backoff(0));
    assert_eq!(h.relay_once().await, 1, "a DUPLICATE answer counts as delivered");

    assert_eq!(h.hub.deliveries().len(), 2, "sent twice");
    assert_eq!(times_at_hub(&h, m.message.message_id.as_str()), 1, "applied once");
    assert_eq!(h.store.pending().await.unwrap(), 0);
    assert!(h.store.dead_letters().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rejected_message_becomes_a_dead_letter_and_a_replay_delivers_it() {
    let h = Harness::with(manual()).await;
    let pc = gtin("0950110157002");
    let m = one_pending(&h, &pc).await;
    h.hub.set_delivery(DeliveryMode::Reject(HashSet::from([m.message.message_id.to_string()])));

    assert_eq!(h.relay_once().await, 0);

    let dead = h.store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].seq, dead[0].dead), (m.seq, true));
    assert_eq!(dead[0].last_error.as_deref(), Some("rejected by the fake hub"));
    assert_eq!(h.store.pending().await.unwrap(), 0);
    h.hub.set_delivery(DeliveryMode::Apply);
    h.clock.advance(Duration::from_secs(3600));
    assert_eq!(h.relay_once().await, 0, "a dead letter is not retried on its own");
    assert_eq!(times_at_hub(&h, m.message.message_id.as_str()), 0);

    assert!(h.store.replay(m.seq, h.clock.now()).await.unwrap());
    assert!(!h.store.replay(m.seq, h.clock.now()).await.unwrap(), "no longer a dead letter");
    assert_eq!(h.relay_once().await, 1);

    assert_eq!(times_at_hub(&h, m.message.message_id.as_str()), 1);
    assert!(h.store.dead_letters().await.unwrap().is_empty());
    assert_eq!(h.store.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn a_message_that_keeps_failing_becomes_a_dead_letter_after_the_configured_attempts() {
    let h = Harness::with(Setup { max_delivery_attempts: 3, ..manual() }).await;
    let pc = gtin("0950110157003");
    let m = one_pending(&h, &pc).await;
    h.hub.set_delivery(DeliveryMode::Unavailable);

    for attempt in 1..=3 {
        assert!(h.store.dead_letters().await.unwrap().is_empty(), "alive before attempt {attempt}");
        assert_eq!(h.relay_once().await, 0);
        h.clock.advance(Duration::from_secs(60));
    }

    let dead = h.store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].seq, dead[0].attempts), (m.seq, 3));
    assert_eq!(h.hub.deliveries().len(), 3);
    assert_eq!(h.store.pending().await.unwrap(), 0);
}

/// `/metrics` as the national system serves it, read back strictly: the backlog, the messages
/// whose last attempt failed and the dead letters.
async fn outbox_figures(h: &Harness) -> (f64, f64, f64) {
    let text =
        client(None).get(format!("{}/metrics", h.url)).send_retrying().await.unwrap().text().await.unwrap();
    let e = openmvs_telemetry::check_exposition(&text).unwrap_or_else(|e| panic!("/metrics: {e}\n{text}"));
    let v = |name: &str| e.value(name, &[]).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    (v("openmvs_outbox_pending"), v("openmvs_outbox_failing"), v("openmvs_outbox_dead_letters"))
}

#[tokio::test]
async fn metrics_show_a_message_failing_then_dead_then_delivered_after_its_replay() {
    let h = Harness::with(Setup { max_delivery_attempts: 2, ..manual() }).await;
    let pc = gtin("0950110157005");
    let m = one_pending(&h, &pc).await;
    assert_eq!(outbox_figures(&h).await, (1.0, 0.0, 0.0));
    h.hub.set_delivery(DeliveryMode::Unavailable);

    assert_eq!(h.relay_once().await, 0);
    assert_eq!(outbox_figures(&h).await, (1.0, 1.0, 0.0), "failing, still pending");
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(h.relay_once().await, 0);
    assert_eq!(outbox_figures(&h).await, (0.0, 0.0, 1.0), "given up: a dead letter");

    h.hub.set_delivery(DeliveryMode::Apply);
    assert!(h.store.replay(m.seq, h.clock.now()).await.unwrap());
    assert_eq!(outbox_figures(&h).await, (1.0, 0.0, 0.0), "replayed: live again, not failing");
    assert_eq!(h.relay_once().await, 1);
    assert_eq!(outbox_figures(&h).await, (0.0, 0.0, 0.0));
}

#[tokio::test]
async fn a_message_whose_payload_does_not_decode_becomes_a_dead_letter_and_does_not_block_its_product() {
    let h = Harness::with(manual()).await;
    let pc = gtin("0950110157004");
    h.seed(&pc, "B1", &["DE", "FR"], &["S1"]).await;
    let garbled = OutboxMessage {
        message_id: "MSG-DE-garbled".into(),
        destination: "hub".into(),
        kind: "pack-state".into(),
        ordering_key: pc.clone(),
        payload: "{not json".into(),
    };
    h.store.commit(UnitOfWork { outbox: vec![garbled], ..UnitOfWork::default() }).await.unwrap();
    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", &pc, "B1", "S1").await;
    assert!(r.accepted, "{r:?}");

    for _ in 0..3 {
        h.relay_once().await;
        h.clock.advance(Duration::from_secs(60));
    }

    let dead = h.store.dead_letters().await.unwrap();
    let ids: Vec<&str> = dead.iter().map(|d| d.message.message_id.as_str()).collect();
    assert_eq!(ids, ["MSG-DE-garbled"], "{dead:?}");
    assert!(dead[0].last_error.as_deref().unwrap_or_default().contains("does not decode"), "{dead:?}");
    assert_eq!(h.hub.applied().len(), 1, "the supply behind it reached the hub");
    assert_eq!(h.store.pending().await.unwrap(), 0);
}
