//! The outbox relay towards the hub: state changes of multi-market packs and alerts for the
//! owning OBP, delivered over mutual TLS, in commit order per product.

use openmvs_core::time::Timestamp;
use openmvs_store::OutboxQueue;
use openmvs_wire::hub::{Envelope, Message, PackStateMsg};

use crate::fake_hub::kind;
use crate::harness::*;
use crate::pki::NATIONAL_NAME;

fn pack_states(applied: &[Envelope]) -> Vec<PackStateMsg> {
    applied
        .iter()
        .filter_map(|e| match &e.body {
            Message::PackState(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_supply_of_a_multi_market_pack_is_delivered_to_the_hub_as_pack_state() {
    let h = Harness::start().await;
    let pc = gtin("0950110156000");
    h.seed(&pc, "B1", &["DE", "FR"], &["S1", "S2"]).await;

    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", &pc, "B1", "S2").await;
    assert!(r.accepted, "{r:?}");

    h.relay_all().await;
    let env = h
        .hub
        .applied()
        .into_iter()
        .find(|e| kind(&e.body) == "pack-state")
        .expect("a pack-state message at the hub");
    assert_eq!((env.origin.as_str(), env.ordering_key.as_str()), ("DE", pc.as_str()));
    let Message::PackState(s) = &env.body else { unreachable!() };
    assert_eq!(
        (s.product_code.as_str(), s.serial.as_str(), s.batch.as_str(), s.scheme.as_str()),
        (pc.as_str(), "S2", "B1", "GTIN")
    );
    assert_eq!((s.state.as_str(), s.command.as_str()), ("SUPPLIED", "supply"));
    assert_eq!((s.market.as_str(), s.location.as_str()), ("DE", "DE-PHARMA-1"));
    assert!(Timestamp::parse_rfc3339(&s.at).is_some(), "at: {}", s.at);
    assert!(
        h.hub.peers().iter().all(|names| names.iter().any(|n| n == NATIONAL_NAME)),
        "the link presents the national system's certificate: {:?}",
        h.hub.peers()
    );
    assert_eq!(pack_states(&h.hub.applied()).len(), 1, "exactly one message for one change");
}

#[tokio::test]
async fn a_single_market_pack_produces_no_pack_state_message() {
    let h = Harness::with(Setup { relay: false, ..Setup::default() }).await;
    let single = gtin("0950110156001");
    let multi = gtin("0950110156002");
    h.seed(&single, "B1", &["DE"], &["S1"]).await;
    h.seed(&multi, "B1", &["DE", "FR"], &["S1"]).await;

    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", &single, "B1", "S1").await;
    assert!(r.accepted, "{r:?}");
    assert_eq!(h.store.pending().await.unwrap(), 0, "a single-market pack has no other copy to tell");

    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-2", &multi, "B1", "S1").await;
    assert!(r.accepted, "{r:?}");
    assert_eq!(h.store.pending().await.unwrap(), 1, "a multi-market pack does");
    assert_eq!(h.relay_once().await, 1);
    let sent = pack_states(&h.hub.applied());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].product_code, multi);
}

#[tokio::test]
async fn an_alert_is_delivered_to_the_hub_for_the_owning_obp() {
    let h = Harness::start().await;
    let pc = gtin("0950110156003");
    h.seed(&pc, "B1", &["DE"], &["S1"]).await;

    let r = h.op(&pharmacy("DE-PHARMA-1"), VERIFY, "v-1", &pc, "B1", "UNKNOWN-1").await;
    assert_eq!(r.return_code, "NMVS_NC_PC_02", "{r:?}");
    let raised = r.alert.expect("an A3 alert");
    assert_eq!(raised.code, "A3");

    h.relay_all().await;
    let env =
        h.hub.applied().into_iter().find(|e| kind(&e.body) == "alert").expect("an alert message at the hub");
    assert_eq!((env.origin.as_str(), env.ordering_key.as_str()), ("DE", pc.as_str()));
    let Message::Alert(a) = &env.body else { unreachable!() };
    assert_eq!(a.owner, OWNER);
    assert_eq!((a.alert.id.as_str(), a.alert.code.as_str()), (raised.id.as_str(), "A3"));
    assert_eq!((a.alert.serial.as_str(), a.alert.batch.as_str()), ("UNKNOWN-1", "B1"));
    assert_eq!((a.alert.market.as_str(), a.alert.return_code.as_str()), ("DE", "NMVS_NC_PC_02"));
    assert_eq!(a.alert.product_code, pc);
}

#[tokio::test]
async fn messages_about_one_product_reach_the_hub_in_commit_order() {
    let h = Harness::with(Setup { relay: false, ..Setup::default() }).await;
    let pc = gtin("0950110156004");
    h.seed(&pc, "B1", &["DE", "FR"], &["S1", "S2"]).await;
    let at = pharmacy("DE-PHARMA-1");
    assert!(h.op(&at, SUPPLY, "t-1", &pc, "B1", "S1").await.accepted);
    assert!(h.op(&at, UNDO_SUPPLY, "t-2", &pc, "B1", "S1").await.accepted);
    assert!(h.op(&at, SUPPLY, "t-3", &pc, "B1", "S2").await.accepted);
    assert_eq!(h.store.pending().await.unwrap(), 3);

    // A product's messages go as a run, in commit order, in one delivery.
    assert_eq!(h.relay_once().await, 3);
    assert_eq!(h.hub.deliveries()[0].messages.len(), 3);
    assert_eq!(pack_states(&h.hub.applied()).len(), 3, "three pack-state messages at the hub");
    assert_eq!(h.store.pending().await.unwrap(), 0);

    let order: Vec<(String, String, String)> =
        pack_states(&h.hub.applied()).into_iter().map(|s| (s.serial, s.state, s.command)).collect();
    let expected =
        [("S1", "SUPPLIED", "supply"), ("S1", "ACTIVE", "supply-undo"), ("S2", "SUPPLIED", "supply")];
    let expected: Vec<(String, String, String)> =
        expected.iter().map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into())).collect();
    assert_eq!(order, expected);
}
