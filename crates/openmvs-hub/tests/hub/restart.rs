//! The whole system killed while its relays were sending, and started again on the same data:
//! a multi-market pack's state reaches the other market in the first relay rounds after the
//! start, on a clock that does not move, instead of queuing behind the claims of the processes
//! that died until their leases end, or behind a market's backoff.

use std::sync::Arc;

use openmvs_core::pack::Command;
use openmvs_national::HubLink;
use openmvs_store::BoxFuture;
use openmvs_wire::hub::{Delivery, DeliveryAck, IntermarketAnswer, IntermarketRequest};
use tokio::sync::Notify;

use crate::harness::*;

fn serial(i: u32) -> String {
    format!("QZX{i:08}")
}

/// DE and FR hold the product with [`BATCH`] and `n` serials.
async fn two_markets(w: &World, n: u32) {
    w.product_and_batch(&["DE", "FR"]).await;
    w.upload((0..n).map(serial).collect()).await;
    w.relay_all().await;
}

/// The state a pharmacy of `market` sees when it verifies `serial`.
async fn state(w: &World, market: &str, serial: &str) -> String {
    let r = w.pharmacy(market, Command::Verify, serial).await;
    r.pack.map(|p| p.state).unwrap_or_else(|| format!("no pack: {}", r.return_code))
}

/// A hub that takes a national system's delivery and never answers: the national system dies
/// while it sends. Notifies when a delivery starts.
#[derive(Default)]
struct Hanging(Notify);

impl HubLink for Hanging {
    fn deliver(&self, _: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>> {
        Box::pin(async move {
            self.0.notify_one();
            std::future::pending().await
        })
    }

    fn intermarket(&self, _: IntermarketRequest) -> BoxFuture<'_, Result<IntermarketAnswer, String>> {
        Box::pin(std::future::pending())
    }
}

/// Runs `market`'s relay until it is sending to a hub that never answers, and drops it there:
/// what it claimed stays claimed, as a killed process leaves it.
async fn national_dies_sending(w: &World, market: &str) {
    let hub = Arc::new(Hanging::default());
    tokio::select! {
        r = w.national(market).relay_once(hub.as_ref()) => panic!("the round ended: {r:?}"),
        () = hub.0.notified() => {}
    }
}

/// Runs the hub's relay until it is sending to `market`, which never answers, and drops it there.
async fn hub_dies_sending_to(w: &World, market: &str) {
    w.link.hang(market);
    tokio::select! {
        r = w.hub.relay_once() => panic!("the pass ended: {r:?}"),
        () = w.link.hung.notified() => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_claims_of_the_dead_relays_are_sent_in_the_first_rounds_not_after_their_lease() {
    let mut w = world().await;
    two_markets(&w, 3).await;
    // DE's supply of the first pack reaches the hub, which dies while sending it to FR.
    assert_eq!(w.supply("DE", &serial(0)).await, "NMVS_SUCCESS");
    assert_eq!(w.national_relay("DE").await, 1);
    hub_dies_sending_to(&w, "FR").await;
    // DE's supply of the second pack: DE dies while sending it to the hub.
    assert_eq!(w.supply("DE", &serial(1)).await, "NMVS_SUCCESS");
    national_dies_sending(&w, "DE").await;
    // Each claim holds its product's queue: the next message of the product waits behind it.
    assert_eq!(w.supply("DE", &serial(2)).await, "NMVS_SUCCESS");
    assert_eq!(w.national_relay("DE").await, 0, "DE's queue waits behind its claim");

    w.restart().await;
    // The clock has not moved: no lease of the processes that died has ended.
    assert_eq!(w.national_relay("DE").await, 2, "DE sends its claimed message and the one behind it");
    assert_eq!(w.hub.relay_once().await.expect("relay"), 3, "one pass of the hub delivers all three to FR");
    for i in 0..3 {
        assert_eq!(state(&w, "FR", &serial(i)).await, "SUPPLIED", "pack {i} in FR");
    }
    let statuses: Vec<String> = w.link.seen("FR").into_iter().map(|s| s.status).collect();
    assert_eq!(statuses, ["APPLIED"; 3], "each applied once, none of them seen before by FR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_market_that_was_down_for_long_is_tried_at_once_not_after_its_backoff() {
    let mut w = world().await;
    two_markets(&w, 1).await;
    w.link.set_down("FR", true);
    assert_eq!(w.supply("DE", &serial(0)).await, "NMVS_SUCCESS");
    assert_eq!(w.national_relay("DE").await, 1);
    // FR refuses every attempt for a while: the wait between attempts grows to a minute.
    for _ in 0..8 {
        assert_eq!(w.relay_all().await, 0);
        w.advance(openmvs_hub::MAX_BACKOFF);
    }
    assert_eq!(w.relay_all().await, 0);
    // FR is back (the restart links it again), and the hub restarts: FR is tried at once.
    w.restart().await;
    assert_eq!(w.hub.relay_once().await.expect("relay"), 1, "delivered in the first pass");
    assert_eq!(state(&w, "FR", &serial(0)).await, "SUPPLIED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_told_to_stop_finishes_the_delivery_in_flight_and_leaves_the_rest_for_later() {
    let w = world().await;
    w.product_and_batch(&["DE", "FR"]).await;
    w.upload((0..3).map(serial).collect()).await;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    *w.link.stop_after_delivery.lock().unwrap() = Some(stop);
    // The shutdown comes while the first market's delivery is in flight: that delivery is
    // answered and acknowledged, and the relay returns without starting the next.
    w.hub.clone().run_relay(stopping).await;
    let (de, fr) = (w.link.kinds("DE"), w.link.kinds("FR"));
    assert!(
        de.is_empty() != fr.is_empty(),
        "one market had its delivery, the other none: DE {de:?}, FR {fr:?}"
    );
    // What was delivered is not sent again; the rest goes with the next pass (another node's, or
    // this one's after its start).
    assert!(w.relay_all().await > 0);
    for market in ["DE", "FR"] {
        let seen = w.link.seen(market);
        assert!(seen.iter().any(|s| s.kind == "packs"), "{market} has the serials: {seen:?}");
        assert!(seen.iter().all(|s| s.status == "APPLIED"), "{market} applied each once: {seen:?}");
    }
    for i in 0..3 {
        assert_eq!(state(&w, "FR", &serial(i)).await, "ACTIVE", "pack {i} in FR");
    }
}
