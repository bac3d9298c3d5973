//! The internal routes answer only the hub: a client certificate from the trusted CA that names
//! `hub.openmvs` in its DNS SAN.

use openmvs_store::PackStore;
use openmvs_wire::hub::{Delivery, IntermarketRequest};

use crate::fake_hub::FakeHub;
use crate::harness::*;
use crate::pki::{Leaf, pki};

fn seed_delivery(pc: &str) -> Delivery {
    Delivery {
        messages: vec![
            envelope(product(pc, "Testomab 10 mg", 1)),
            envelope(batch_msg(pc, "B1", &["DE"])),
            envelope(packs(pc, "B1", &["S1"])),
        ],
    }
}

fn im_request(pc: &str) -> IntermarketRequest {
    IntermarketRequest {
        market: "FR".into(),
        client_id: "fr-pharmacy-1".into(),
        role: "PHARMACY".into(),
        location: FR_LOCATION.into(),
        command: "supply".into(),
        client_trx_id: "fr-1".into(),
        scheme: "GTIN".into(),
        product_code: pc.into(),
        serial: "S1".into(),
        batch: "B1".into(),
        expiry: EXPIRY.into(),
    }
}

/// Calls both internal routes as `identity` and checks each is refused with 403 naming the
/// client certificate.
async fn both_routes_refuse(h: &Harness, identity: Option<&Leaf>, pc: &str) {
    let calls = [
        ("/internal/v1/messages", serde_json::to_value(seed_delivery(pc)).unwrap()),
        ("/internal/v1/intermarket", serde_json::to_value(im_request(pc)).unwrap()),
    ];
    for (path, body) in calls {
        let resp =
            FakeHub::post_as(identity, &format!("{}{path}", h.url), &body).await.expect("TLS connects");
        assert_eq!(resp.status(), 403, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["return_code"], "NMVS_FE_AU_04", "{path}: {body}");
        assert_eq!(body["details"][0]["field"], "client_certificate", "{path}: {body}");
    }
}

#[tokio::test]
async fn internal_routes_refuse_a_caller_without_a_client_certificate() {
    let h = Harness::start().await;
    let pc = gtin("0950110154000");

    both_routes_refuse(&h, None, &pc).await;

    assert_eq!(h.store.pack_count().await.unwrap(), 0, "nothing was applied");
    // The same delivery from the hub goes through: the refusal was about the caller only.
    let ack = h.hub.send(&h.url, &seed_delivery(&pc)).await;
    assert!(ack.results.iter().all(|a| a.status == "APPLIED"), "{ack:?}");
    assert_eq!(h.store.pack_count().await.unwrap(), 1);
}

#[tokio::test]
async fn internal_routes_refuse_a_certificate_of_the_trusted_ca_for_another_name() {
    let h = Harness::start().await;
    let pc = gtin("0950110154001");

    both_routes_refuse(&h, Some(&pki().impostor), &pc).await;
    // The hub's name as common name is not enough: only the DNS SAN counts.
    both_routes_refuse(&h, Some(&pki().cn_impostor), &pc).await;
    // Nor is the national system's own certificate.
    both_routes_refuse(&h, Some(&pki().national), &pc).await;

    assert_eq!(h.store.pack_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_fails_the_tls_handshake() {
    let h = Harness::start().await;
    let pc = gtin("0950110154002");

    let result =
        FakeHub::post_as(Some(&pki().rogue), &format!("{}/internal/v1/messages", h.url), &seed_delivery(&pc))
            .await;

    assert!(result.is_err(), "expected a TLS failure, got HTTP {:?}", result.map(|r| r.status()));
    assert_eq!(h.store.pack_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_revoked_hub_certificate_fails_the_tls_handshake() {
    let h = Harness::with(Setup { crls: true, ..Setup::default() }).await;
    let pc = gtin("0950110154003");

    let result = FakeHub::post_as(
        Some(&pki().revoked),
        &format!("{}/internal/v1/messages", h.url),
        &seed_delivery(&pc),
    )
    .await;

    assert!(result.is_err(), "expected a TLS failure, got HTTP {:?}", result.map(|r| r.status()));
    assert_eq!(h.store.pack_count().await.unwrap(), 0);
    // The hub's current certificate, from the same CA, is not revoked.
    let ack = h.hub.send(&h.url, &seed_delivery(&pc)).await;
    assert!(ack.results.iter().all(|a| a.status == "APPLIED"), "{ack:?}");
    // And without the revocation list the revoked certificate would have passed: the list refused it.
    let unaware = Harness::start().await;
    let resp = FakeHub::post_as(
        Some(&pki().revoked),
        &format!("{}/internal/v1/messages", unaware.url),
        &seed_delivery(&pc),
    )
    .await
    .expect("accepted without the list");
    assert_eq!(resp.status(), 200);
}
