//! Multi-market synchronisation arriving from the hub: a change made in FR mirrored here, once,
//! and an A24 alert, exactly one, when the pack was already decommissioned here.

use openmvs_core::ids::MarketCode;
use openmvs_core::roles::Role;
use openmvs_store::OutboxQueue;
use openmvs_wire::hub::Message;

use crate::fake_hub::kind;
use crate::harness::*;

#[tokio::test]
async fn a_supply_in_another_market_sets_an_active_pack_supplied_here() {
    let h = Harness::start().await;
    let pc = gtin("0950110155000");
    h.seed(&pc, "B1", &["DE", "FR"], &["S1"]).await;

    let ack = h.hub.send_one(&h.url, &envelope(from_fr(&h, &pc, "B1", "S1", "SUPPLIED", "supply"))).await;

    assert_eq!(ack.status, "APPLIED", "{ack:?}");
    let stored = h.stored(&pc, "S1").await;
    assert_eq!(stored.pack.state.to_string(), "SUPPLIED");
    let change = stored.pack.last_change.unwrap();
    assert_eq!(change.synced_from, Some(MarketCode::new(FR).unwrap()));
    assert_eq!(change.location.as_str(), FR_LOCATION);
    let v = h.op(&pharmacy("DE-PHARMA-1"), VERIFY, "v-1", &pc, "B1", "S1").await;
    let view = v.pack.unwrap();
    assert_eq!((view.state.as_str(), view.dispensable), ("SUPPLIED", false));
    assert!(h.alerts().await.is_empty());
    assert_eq!(h.store.pending().await.unwrap(), 0, "a mirrored change is not sent back to the hub");
}

#[tokio::test]
async fn a_redelivered_synchronised_change_changes_nothing_and_raises_nothing() {
    let h = Harness::start().await;
    let pc = gtin("0950110155001");
    h.seed(&pc, "B1", &["DE", "FR"], &["S1"]).await;
    let change = from_fr(&h, &pc, "B1", "S1", "SUPPLIED", "supply");
    let env = envelope(change.clone());
    assert_eq!(h.hub.send_one(&h.url, &env).await.status, "APPLIED");
    let version = h.stored(&pc, "S1").await.version;
    let audit = h.audit_count().await;

    let ack = h.hub.send_one(&h.url, &env).await;
    assert_eq!(ack.status, "DUPLICATE", "{ack:?}");
    assert_eq!(h.stored(&pc, "S1").await.version, version);
    assert_eq!(h.audit_count().await, audit);

    // The same change again under another message id is recognised as reflected already.
    let ack = h.hub.send_one(&h.url, &envelope(change)).await;
    assert_eq!(ack.status, "APPLIED", "{ack:?}");
    assert_eq!(h.state(&pc, "S1").await, "SUPPLIED");
    assert!(h.alerts().await.is_empty(), "the same change twice is not a second decommissioning");
    assert_eq!(h.store.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn a_synchronised_change_for_a_pack_already_supplied_here_raises_exactly_one_a24() {
    let h = Harness::start().await;
    let pc = gtin("0950110155002");
    h.seed(&pc, "B1", &["DE", "FR"], &["S1"]).await;
    let local = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", &pc, "B1", "S1").await;
    assert!(local.accepted, "{local:?}");
    let env = envelope(from_fr(&h, &pc, "B1", "S1", "SUPPLIED", "supply"));

    let first = h.hub.send_one(&h.url, &env).await;
    let mut again = Vec::new();
    for _ in 0..3 {
        again.push(h.hub.send_one(&h.url, &env).await.status);
    }

    assert_eq!(first.status, "APPLIED", "{first:?}");
    assert_eq!(again, ["DUPLICATE"; 3]);
    let alerts = h.alerts().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].code.to_string(), "A24");
    assert_eq!(alerts[0].return_code.to_string(), "NMVS_NC_PCK_22");
    assert_eq!((alerts[0].serial.as_str(), alerts[0].location.as_str()), ("S1", FR_LOCATION));
    // The local change stands.
    let stored = h.stored(&pc, "S1").await;
    assert_eq!(stored.pack.state.to_string(), "SUPPLIED");
    assert_eq!(stored.pack.last_change.unwrap().synced_from, None);

    // The NMVO sees it in its list.
    let (_, token) = h.token(Role::Nmvo, "NMVO-HQ").await;
    let list = h.get_json(&token, "/v1/alerts").await;
    let listed = list["alerts"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["code"], "A24");
    assert_eq!(listed[0]["return_code"], "NMVS_NC_PCK_22");
    assert_eq!(listed[0]["serial"], "S1");

    // And the owning OBP gets it through the hub, once.
    h.relay_all().await;
    let sent: Vec<_> = h.hub.applied().into_iter().filter(|e| kind(&e.body) == "alert").collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let Message::Alert(a) = &sent[0].body else { unreachable!() };
    assert_eq!(
        (a.owner.as_str(), a.alert.id.as_str(), a.alert.code.as_str()),
        (OWNER, alerts[0].id.as_str(), "A24")
    );
}

#[tokio::test]
async fn a_synchronised_undo_reverts_only_the_change_that_market_made() {
    let h = Harness::start().await;
    let pc = gtin("0950110155003");
    h.seed(&pc, "B1", &["DE", "FR"], &["S1", "S2"]).await;
    // S1 was supplied in FR; S2 here.
    assert_eq!(
        h.hub.send_one(&h.url, &envelope(from_fr(&h, &pc, "B1", "S1", "SUPPLIED", "supply"))).await.status,
        "APPLIED"
    );
    let local = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-2", &pc, "B1", "S2").await;
    assert!(local.accepted, "{local:?}");

    let undo_1 =
        h.hub.send_one(&h.url, &envelope(from_fr(&h, &pc, "B1", "S1", "ACTIVE", "supply-undo"))).await;
    let undo_2 =
        h.hub.send_one(&h.url, &envelope(from_fr(&h, &pc, "B1", "S2", "ACTIVE", "supply-undo"))).await;

    assert_eq!((undo_1.status.as_str(), undo_2.status.as_str()), ("APPLIED", "APPLIED"));
    assert_eq!(h.state(&pc, "S1").await, "ACTIVE", "FR's own supply is undone");
    assert_eq!(h.state(&pc, "S2").await, "SUPPLIED", "FR cannot undo a supply made here");
    assert!(h.alerts().await.is_empty());
    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", &pc, "B1", "S1").await;
    assert!(r.accepted, "S1 is dispensable here again: {r:?}");
}
