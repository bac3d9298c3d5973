//! Several nodes of one national system on one PostgreSQL schema: races on one pack across nodes,
//! outbox relays and bulk workers on every node sharing the work, and one audit chain for all.
//! Skipped, saying so, without `OPENMVS_TEST_DATABASE_URL`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openmvs_core::ids::BulkId;
use openmvs_core::roles::Role;
use openmvs_national::HubLink;
use openmvs_store::BoxFuture;
use openmvs_wire::hub::{Delivery, DeliveryAck, IntermarketAnswer, IntermarketRequest, MessageAck};
use serde_json::{Value, json};

use openmvs_core::time::Clock;

use crate::harness::*;

async fn node(pg: &(String, String), opts: AppOptions) -> TestApp {
    spawn_app_with(AppOptions { postgres: Some(pg.clone()), ..opts }).await
}

async fn verifies(app: &TestApp) -> u64 {
    let report = openmvs_national::verify_audit(&*app.store, [audit_key().verifying_key()])
        .await
        .unwrap_or_else(|e| panic!("the shared audit trail does not verify: {e}"));
    report.records.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_supplies_on_each_of_two_nodes_supply_the_pack_once() {
    let Some(pg) = shared_postgres("two nodes racing on one pack") else { return };
    let a = node(&pg, AppOptions::default()).await;
    let b = node(&pg, AppOptions::default()).await;
    a.seed_standard().await;
    let p = a.pack().await;
    let ca = Arc::new(a.client(Role::Pharmacy, "pharmacy-a").await);
    let cb = Arc::new(b.client(Role::Pharmacy, "pharmacy-b").await);
    let nca = a.client(Role::Nca, "nca-office").await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        let body = p.req();
        tasks.push(tokio::spawn(async move { c.op("supply", &body).await }));
    }
    let mut codes: HashMap<String, usize> = HashMap::new();
    let mut accepted = 0;
    for t in tasks {
        let r = t.await.expect("the request task");
        assert_eq!(r.status, 200, "every race is answered, none fails: {}", r.text);
        if r.json["accepted"] == json!(true) {
            accepted += 1;
            assert_eq!(r.json["return_code"], "NMVS_SUCCESS");
        }
        *codes.entry(r.json["return_code"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
    }
    assert_eq!(accepted, 1, "exactly one supply wins across both nodes: {codes:?}");
    assert_eq!(codes.get("NMVS_SUCCESS"), Some(&1), "{codes:?}");
    for code in codes.keys().filter(|c| *c != "NMVS_SUCCESS") {
        assert!(code.starts_with("NMVS_NC_PCK"), "a refusal says the pack is no longer active: {codes:?}");
    }
    assert_eq!(a.stored_state(&p).await, "SUPPLIED");
    assert_eq!(b.stored_state(&p).await, "SUPPLIED");
    let r = nca.get(&p.audit_path()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let records = r.json["records"].as_array().or_else(|| r.json.as_array()).cloned().unwrap_or_default();
    let won: Vec<&Value> =
        records.iter().filter(|x| x["operation"] == "supply" && x["return_code"] == "NMVS_SUCCESS").collect();
    assert_eq!(won.len(), 1, "one accepted supply in the trail: {records:?}");
    assert!(verifies(&a).await >= 100, "every answer was audited on one chain");
}

/// A hub that records every message id it is sent.
#[derive(Default)]
struct RecordingHub {
    seen: Mutex<Vec<String>>,
}

impl HubLink for RecordingHub {
    fn deliver(&self, delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>> {
        let mut results = Vec::new();
        for m in &delivery.messages {
            self.seen.lock().expect("lock").push(m.message_id.clone());
            results.push(MessageAck {
                message_id: m.message_id.clone(),
                status: "APPLIED".into(),
                error: None,
            });
        }
        Box::pin(async move { Ok(DeliveryAck { results }) })
    }

    fn intermarket(&self, _req: IntermarketRequest) -> BoxFuture<'_, Result<IntermarketAnswer, String>> {
        Box::pin(async { Ok(IntermarketAnswer { market: None, response: None, unreachable: Vec::new() }) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_relays_on_two_nodes_send_each_message_once() {
    let Some(pg) = shared_postgres("two relays on one outbox") else { return };
    let hub = Arc::new(RecordingHub::default());
    let link: Arc<dyn HubLink> = hub.clone();
    let a = node(&pg, AppOptions { hub: Some(link.clone()), ..AppOptions::default() }).await;
    let b = node(&pg, AppOptions { hub: Some(link.clone()), ..AppOptions::default() }).await;
    // Each node's first round resumes the outbox, ending every claim, a live node's too
    // (`openmvs_store::relay::Resumed`: a start may send a message twice). Both nodes are started
    // before the load, as in service, so that the rounds below are those of two live relays.
    for n in [&a, &b] {
        assert_eq!(n.national.relay_once(link.as_ref()).await.expect("the first round"), 0);
    }
    a.seed_product(GTIN).await;
    // A multi-market batch: every change of its packs is sent to the hub.
    a.seed_batch(GTIN, BATCH, EXPIRY, &[DE, "FR"]).await;
    let packs = a.packs(60).await;
    let ca = Arc::new(a.client(Role::Pharmacy, "pharmacy-a").await);
    let cb = Arc::new(b.client(Role::Pharmacy, "pharmacy-b").await);
    let mut tasks = Vec::new();
    for (i, p) in packs.iter().enumerate() {
        let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        let body = p.req();
        tasks.push(tokio::spawn(async move { c.op("supply", &body).await }));
    }
    for t in tasks {
        let r = t.await.expect("the request task");
        assert_eq!(r.json["accepted"], json!(true), "{}", r.text);
    }
    // Both nodes' relays at once, round after round, each holding what it sends.
    for _ in 0..100 {
        if a.store.pending().await.expect("pending") == 0 {
            break;
        }
        let (ra, rb) =
            tokio::join!(a.national.relay_once(link.as_ref()), b.national.relay_once(link.as_ref()));
        ra.expect("node A's relay round");
        rb.expect("node B's relay round");
    }
    assert_eq!(a.store.pending().await.expect("pending"), 0, "the outbox drained");
    let seen = hub.seen.lock().expect("lock").clone();
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 60, "one message per supplied pack");
    assert_eq!(seen.len(), 60, "no message was sent twice: {} sends", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_job_held_by_a_dead_node_is_finished_by_another_after_its_lease() {
    let Some(pg) = shared_postgres("a bulk job taken over") else { return };
    let lease = Some(Duration::from_secs(20));
    let a = node(&pg, AppOptions { lease, ..AppOptions::default() }).await;
    let b = node(&pg, AppOptions { lease, ..AppOptions::default() }).await;
    a.seed_standard().await;
    let packs = a.packs(40).await;
    let c = a.client(Role::Pharmacy, "pharmacy-a").await;
    let rows: Vec<Value> = packs.iter().map(|p| p.row("supply")).collect();
    let r = c.post("/v1/bulk", &json!({"client_trx_id": trx(), "transactions": rows})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = BulkId::new(r.json["bulk_id"].as_str().expect("bulk_id"));
    // Node A takes the job and dies before its first chunk.
    let now = a.clock.now();
    assert!(
        a.store
            .claim_bulk(&id, a.national.node_id(), now, now.plus(Duration::from_secs(20)))
            .await
            .expect("claim")
    );
    assert!(!b.bulk_round().await, "node B finds no job it may take");
    let job = a.store.bulk(&id).await.expect("read").expect("the job");
    assert_eq!(job.done_rows, 0, "node B leaves a job another node holds alone");
    // Once the lease is over on B's clock, B takes the job over and finishes it.
    b.advance(Duration::from_secs(21));
    assert!(b.bulk_round().await, "node B takes the job over");
    let done = c.wait_bulk(id.as_str()).await;
    let results = done["results"].as_array().expect("results");
    assert_eq!(results.len(), 40);
    assert!(results.iter().all(|r| r["accepted"] == json!(true)), "{done}");
    for p in &packs {
        assert_eq!(a.stored_state(p).await, "SUPPLIED");
    }
    verifies(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_signed_by_a_key_one_node_just_made_is_accepted_by_the_others() {
    let Some(pg) = shared_postgres("a key rotated on one node") else { return };
    let a = node(&pg, AppOptions::default()).await;
    let b = node(&pg, AppOptions::default()).await;
    a.seed_standard().await;
    let p = a.pack().await;
    let kid = a.national.rotate_signing_key().await.expect("rotate");
    let c = a.client(Role::Pharmacy, "pharmacy-a").await;
    let token = c.current_token();
    assert!(token.contains('.'), "a JWT");
    // B has not reloaded its keys: it learns the new one from the store at the first token.
    let r = b.send(reqwest::Method::POST, "/v1/packs/verify", Some(&token), Body::Json(p.req())).await;
    assert_eq!(r.status, 200, "a token of key {kid} made on A is refused on B: {}", r.text);
    assert_eq!(r.json["return_code"], "NMVS_SUCCESS", "{}", r.text);
    // A token naming a key nobody made is still refused.
    let forged = format!("{token}x");
    let r = b.send(reqwest::Method::POST, "/v1/packs/verify", Some(&forged), Body::Json(p.req())).await;
    assert_eq!(r.status, 401, "{}", r.text);
}
