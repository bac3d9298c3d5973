//! Inter-market requests: a product unknown here asked of the other markets through the hub,
//! within the link's time budget whatever the hub does; and requests the hub routes here,
//! processed as the other market's client, once per transaction id.

use std::time::{Duration, Instant};

use openmvs_core::roles::Role;
use openmvs_store::{AuditStore, OutboxQueue, PackStore};
use openmvs_wire::hub::IntermarketRequest;

use crate::fake_hub::{FR_TRX_ID, FakeHub, IntermarketMode};
use crate::harness::*;
use crate::pki::{client, pki};
use crate::retry::SendRetrying;

/// Generous, for a busy machine: the answer must come back once the link gives up, although the
/// hub never answers ([`IntermarketMode::Hang`]).
const MARGIN: Duration = Duration::from_secs(20);

fn im_request(pc: &str, market: &str, trx: &str) -> IntermarketRequest {
    IntermarketRequest {
        market: market.into(),
        client_id: "fr-pharmacy-1".into(),
        role: "PHARMACY".into(),
        location: FR_LOCATION.into(),
        command: "supply".into(),
        client_trx_id: trx.into(),
        scheme: "GTIN".into(),
        product_code: pc.into(),
        serial: "S1".into(),
        batch: "B1".into(),
        expiry: EXPIRY.into(),
    }
}

async fn post_intermarket(h: &Harness, req: &IntermarketRequest) -> serde_json::Value {
    let resp =
        FakeHub::post_as(Some(&pki().hub), &format!("{}/internal/v1/intermarket", h.url), req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_verify_of_a_product_unknown_here_is_answered_by_another_market_through_the_hub() {
    let h = Harness::start().await;
    let pc = gtin("0950110158000");
    let (client_id, token) = h.token(Role::Pharmacy, "DE-PHARMA-1").await;

    let resp = client(None)
        .post(format!("{}/v1/packs/verify", h.url))
        .bearer_auth(&token)
        .json(&pack_req("pos-1", &pc, "B1", "S1"))
        .send_retrying()
        .await
        .unwrap();

    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["intermarket"], true, "{body}");
    assert_eq!(body["client_trx_id"], "pos-1", "our id, not the other market's");
    assert_eq!(body["trx_id"], FR_TRX_ID);
    assert_eq!(body["return_code"], "NMVS_SUCCESS");
    assert_eq!(body["pack"]["serial"], "S1");
    let asked = h.hub.intermarket_requests();
    assert_eq!(asked.len(), 1);
    let a = &asked[0];
    assert_eq!(
        (a.market.as_str(), a.client_id.as_str(), a.role.as_str()),
        ("DE", client_id.as_str(), "PHARMACY")
    );
    assert_eq!(
        (a.location.as_str(), a.command.as_str(), a.client_trx_id.as_str()),
        ("DE-PHARMA-1", "verify", "pos-1")
    );
    assert_eq!(
        (a.scheme.as_str(), a.product_code.as_str(), a.serial.as_str(), a.batch.as_str(), a.expiry.as_str()),
        ("GTIN", pc.as_str(), "S1", "B1", EXPIRY)
    );
    assert_eq!(h.store.pack_count().await.unwrap(), 0, "nothing of it is stored here");
}

#[tokio::test]
async fn a_product_no_market_knows_is_answered_nc_pc_01_without_an_alert() {
    let h = Harness::start().await;
    h.hub.set_intermarket(IntermarketMode::NoMarket);
    let pc = gtin("0950110158001");

    let r = h.op(&pharmacy("DE-PHARMA-1"), VERIFY, "v-1", &pc, "B1", "S1").await;

    assert_eq!((r.return_code.as_str(), r.level, r.accepted), ("NMVS_NC_PC_01", 3, false), "{r:?}");
    assert!(r.alert.is_none() && r.pack.is_none());
    assert!(!r.intermarket, "no market answered");
    assert_eq!(h.hub.intermarket_requests().len(), 1, "the hub was asked");
    assert!(h.alerts().await.is_empty());
    assert_eq!(h.store.pending().await.unwrap(), 0, "no alert for the hub either");
}

async fn unreachable_hub_answers_ti_hub_01_in_time(h: &Harness, timeout: Duration) {
    let pc = gtin("0950110158002");
    let started = Instant::now();
    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", &pc, "B1", "S1").await;
    let took = started.elapsed();

    assert_eq!((r.return_code.as_str(), r.level, r.accepted), ("NMVS_TI_HUB_01", 3, false), "{r:?}");
    assert!(r.alert.is_none());
    assert!(took < timeout + MARGIN, "answered after {took:?}, the link gives up after {timeout:?}");
    assert!(h.alerts().await.is_empty());
}

#[tokio::test]
async fn a_hub_answering_503_gives_ti_hub_01_within_the_link_timeout() {
    let timeout = Duration::from_millis(400);
    let h = Harness::with(Setup { intermarket_timeout: timeout, ..Setup::default() }).await;
    h.hub.set_intermarket(IntermarketMode::Unavailable);

    unreachable_hub_answers_ti_hub_01_in_time(&h, timeout).await;

    assert_eq!(h.hub.intermarket_requests().len(), 1);
}

#[tokio::test]
async fn a_hub_refusing_connections_gives_ti_hub_01_within_the_link_timeout() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let timeout = Duration::from_millis(400);
    let h = Harness::with(Setup {
        intermarket_timeout: timeout,
        hub_url: Some(format!("https://{closed}")),
        relay: false,
        ..Setup::default()
    })
    .await;

    unreachable_hub_answers_ti_hub_01_in_time(&h, timeout).await;
}

#[tokio::test]
async fn a_hub_slower_than_the_link_timeout_gives_ti_hub_01_at_the_timeout() {
    let timeout = Duration::from_millis(300);
    let h = Harness::with(Setup { intermarket_timeout: timeout, ..Setup::default() }).await;
    h.hub.set_intermarket(IntermarketMode::Hang);

    let started = Instant::now();
    unreachable_hub_answers_ti_hub_01_in_time(&h, timeout).await;

    assert!(started.elapsed() >= timeout, "the link waited for its timeout");
    assert_eq!(h.hub.intermarket_requests().len(), 1);
}

#[tokio::test]
async fn a_retry_after_the_hub_was_unreachable_asks_the_hub_again() {
    let h = Harness::start().await;
    let pc = gtin("0950110158003");
    let at = pharmacy("DE-PHARMA-1");
    h.hub.set_intermarket(IntermarketMode::Unavailable);
    let first = h.op(&at, VERIFY, "v-1", &pc, "B1", "S1").await;
    assert_eq!(first.return_code, "NMVS_TI_HUB_01");

    // The terminal keeps the pack and tries again later with the same transaction id (DR Art 29).
    h.hub.set_intermarket(IntermarketMode::AnswerFromFr);
    let retry = h.op(&at, VERIFY, "v-1", &pc, "B1", "S1").await;

    assert_eq!(h.hub.intermarket_requests().len(), 2, "the hub is asked again");
    assert_eq!((retry.return_code.as_str(), retry.intermarket), ("NMVS_SUCCESS", true), "{retry:?}");
}

#[tokio::test]
async fn a_hub_that_cannot_reach_the_holding_market_gives_ti_mkt_01_not_hub_01_and_a_retry_asks_again() {
    let h = Harness::start().await;
    let pc = gtin("0950110158005");
    let at = pharmacy("DE-PHARMA-1");
    h.hub.set_intermarket(IntermarketMode::FrUnreachable);

    let first = h.op(&at, SUPPLY, "s-1", &pc, "B1", "S1").await;

    assert_eq!(
        (first.return_code.as_str(), first.level, first.accepted),
        ("NMVS_TI_MKT_01", 3, false),
        "{first:?}"
    );
    assert!(first.message.contains("market that holds it could not be reached"), "{first:?}");
    assert!(first.alert.is_none() && first.pack.is_none() && !first.intermarket, "{first:?}");
    assert!(h.alerts().await.is_empty());

    // The terminal keeps the pack and tries again later with the same transaction id (DR Art 29):
    // the first answer was not kept, so the hub is asked again.
    h.hub.set_intermarket(IntermarketMode::AnswerFromFr);
    let retry = h.op(&at, SUPPLY, "s-1", &pc, "B1", "S1").await;

    assert_eq!(h.hub.intermarket_requests().len(), 2, "the hub is asked again");
    assert_eq!((retry.return_code.as_str(), retry.intermarket), ("NMVS_SUCCESS", true), "{retry:?}");
}

#[tokio::test]
async fn an_intermarket_request_from_the_hub_is_processed_once_as_the_other_markets_client() {
    let h = Harness::start().await;
    let pc = gtin("0950110158004");
    h.seed(&pc, "B1", &["DE"], &["S1"]).await;
    let req = im_request(&pc, "FR", "fr-0001");

    let first = post_intermarket(&h, &req).await;

    assert_eq!(first["market"], "DE", "{first}");
    let r = &first["response"];
    assert_eq!((r["intermarket"].as_bool(), r["accepted"].as_bool()), (Some(true), Some(true)), "{first}");
    assert_eq!(r["return_code"], "NMVS_SUCCESS");
    assert_eq!(r["client_trx_id"], "fr-0001");
    assert_eq!(r["pack"]["state"], "SUPPLIED");
    let stored = h.stored(&pc, "S1").await;
    assert_eq!(stored.pack.state.to_string(), "SUPPLIED");
    assert_eq!(stored.pack.last_change.as_ref().unwrap().location.as_str(), FR_LOCATION);

    let replay = post_intermarket(&h, &req).await;

    assert_eq!(replay, first, "the stored answer, same trx_id");
    assert_eq!(h.stored(&pc, "S1").await.version, stored.version, "not supplied twice");
    let subject = format!("GTIN/{pc}/S1");
    let records = h.store.audit_by_subject(&subject).await.unwrap();
    let ops: Vec<&str> = records.iter().map(|r| r.entry.operation.as_str()).collect();
    assert_eq!(
        ops,
        ["intermarket-supply", "intermarket-supply-replay"],
        "one supply, and the replay audited as one"
    );
    assert_eq!(records[0].entry.actor, "FR:fr-pharmacy-1", "kept apart from this market's clients");

    // The key is the market, the client and its transaction id: the same ids from SE are another request.
    let other = post_intermarket(&h, &im_request(&pc, "SE", "fr-0001")).await;
    assert_ne!(other["response"]["trx_id"], first["response"]["trx_id"], "{other}");
    assert_eq!(other["response"]["return_code"], "NMVS_NC_PCK_23", "the same location asks again: {other}");
}

#[tokio::test]
async fn an_intermarket_request_for_a_product_unknown_here_answers_no_market() {
    let h = Harness::start().await;
    let pc = gtin("0950110158005");
    // The node's first token-signing key is audited as it starts.
    let audit_before = h.audit_count().await;

    let answer = post_intermarket(&h, &im_request(&pc, "FR", "fr-0002")).await;

    assert_eq!(answer, serde_json::json!({"market": null, "response": null}));
    assert_eq!(h.audit_count().await, audit_before, "nothing was processed");
}
