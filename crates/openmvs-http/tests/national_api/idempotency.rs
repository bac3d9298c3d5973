//! Idempotency (fmd-rules §4.7): a retry with the same `client_trx_id` and content is answered
//! with the stored response and has no effect, however many arrive at once.

use std::sync::Arc;

use openmvs_core::roles::Role;
use serde_json::{Value, json};

use crate::harness::*;

/// The audit records of a pack whose operation is `operation`, as the NCA reads them.
async fn audited(nca: &Client, p: &Pack, operation: &str) -> Vec<Value> {
    let r = nca.get(&p.audit_path()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let records = r.json["records"].as_array().expect("records").clone();
    records.into_iter().filter(|x| x["operation"] == operation).collect()
}

/// Sends `body` to `op` from `n` tasks at once; returns every answer.
async fn at_once(client: &Arc<Client>, op: &str, body: &Value, n: usize) -> Vec<Resp> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, op, body) = (client.clone(), op.to_owned(), body.clone());
            tokio::spawn(async move { c.op(&op, &body).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for t in tasks {
        answers.push(t.await.expect("the request task"));
    }
    answers
}

#[tokio::test]
async fn a_retry_replays_the_stored_answer_byte_for_byte_and_raises_nothing_new() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    // A refusal with an alert, retried.
    let unknown = Pack { serial: fresh_serial(), ..p.clone() };
    let body = unknown.req();
    let first = a.verify(&body).await;
    check(&first, "NMVS_NC_PC_02", false, None, &[]);
    let again = a.verify(&body).await;
    assert_eq!(again.text, first.text);
    assert_eq!(a.all_alerts("").await.len(), 1, "the retry raised no second alert");
    assert_eq!(audited(&nca, &unknown, "verify").await.len(), 1, "the retry is not audited as a new request");
    // A supply retried three times, then the same supply under a new id: that is only the first repeat.
    let body = p.req();
    let supplied = a.op("supply", &body).await;
    check(&supplied, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
    for _ in 0..3 {
        assert_eq!(a.op("supply", &body).await.text, supplied.text);
    }
    // The same request entered as a scan is the same request.
    let as_scan = json!({"client_trx_id": body["client_trx_id"], "scan": p.scan()});
    assert_eq!(a.op("supply", &as_scan).await.text, supplied.text);
    check(&a.op("supply", &p.req()).await, "NMVS_NC_PCK_23", false, Some("SUPPLIED"), &[]);
    assert_eq!(audited(&nca, &p, "supply").await.len(), 2, "the supply and the one real repeat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_identical_supplies_at_once_get_one_answer_and_supply_the_pack_once() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = Arc::new(app.client(Role::Pharmacy, "pharmacy-a").await);
    let nca = app.client(Role::Nca, "nca-office").await;
    let answers = at_once(&a, "supply", &p.req(), 100).await;
    for r in &answers {
        check(r, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
        assert_eq!(r.json["trx_id"], answers[0].json["trx_id"]);
        assert_eq!(r.text, answers[0].text);
    }
    assert_eq!(app.stored_state(&p).await, "SUPPLIED");
    let supplies = audited(&nca, &p, "supply").await;
    assert_eq!(supplies.len(), 1, "{supplies:?}");
    assert_eq!(supplies[0]["result"]["trx_id"], answers[0].json["trx_id"]);
    // None of the 99 replays counted as a double scan.
    check(&a.op("supply", &p.req()).await, "NMVS_NC_PCK_23", false, Some("SUPPLIED"), &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_identical_requests_at_once_on_an_unknown_serial_raise_exactly_one_alert() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let unknown = Pack { serial: fresh_serial(), ..app.pack().await };
    let a = Arc::new(app.client(Role::Pharmacy, "pharmacy-a").await);
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let answers = at_once(&a, "supply", &unknown.req(), 100).await;
    for r in &answers {
        check(r, "NMVS_NC_PC_02", false, None, &[]);
        assert_eq!(r.text, answers[0].text);
    }
    let alerts = nmvo.all_alerts("").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["id"], answers[0].json["alert"]["id"]);
    assert_eq!((&alerts[0]["serial"], &alerts[0]["code"]), (&json!(unknown.serial), &json!("A3")));
}
