//! Bulk requests (fmd-rules §4.8): accepted at once, processed in the background, results in
//! request order; never an inter-market request.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use openmvs_core::roles::Role;
use serde_json::{Value, json};

use crate::harness::*;

/// One result row: (serial, return code, accepted, state, alert code).
type Row = (String, String, bool, Option<String>, Option<String>);

/// The results of a finished bulk.
fn rows(done: &Value) -> Vec<Row> {
    done["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["serial"].as_str().unwrap_or_default().to_owned(),
                r["return_code"].as_str().unwrap_or_default().to_owned(),
                r["accepted"].as_bool().expect("accepted"),
                r["state"].as_str().map(str::to_owned),
                r["alert"]["code"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn row(serial: &str, code: &str, accepted: bool, state: Option<&str>, alert: Option<&str>) -> Row {
    (serial.to_owned(), code.to_owned(), accepted, state.map(str::to_owned), alert.map(str::to_owned))
}

#[tokio::test]
async fn a_homogeneous_bulk_supplies_every_serial_and_answers_in_request_order() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let mut packs = app.packs(3).await;
    packs.reverse();
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let serials: Vec<&str> = packs.iter().map(|p| p.serial.as_str()).collect();
    let body = json!({"client_trx_id": trx(), "operation": "supply", "scheme": "GTIN",
                      "product_code": GTIN, "batch": BATCH, "expiry": EXPIRY, "serials": serials});
    let done = a.bulk_until_done(&body).await;
    assert_eq!((done["done"].as_u64(), done["total"].as_u64()), (Some(3), Some(3)), "{done}");
    let expected: Vec<Row> =
        serials.iter().map(|s| row(s, "NMVS_SUCCESS", true, Some("SUPPLIED"), None)).collect();
    assert_eq!(rows(&done), expected);
    assert!(done["results"].as_array().expect("results").iter().all(|r| r["product_code"] == GTIN));
    // What the bulk changed, a single-pack verify sees.
    for p in &packs {
        check(&a.verify(&p.req()).await, "NMVS_INFO_PCK_INACTIVE", true, Some("SUPPLIED"), &[]);
    }
}

#[tokio::test]
async fn a_mixed_bulk_answers_each_row_in_order_and_refuses_a_repeated_serial() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let [p1, p2, p3] = <[Pack; 3]>::try_from(app.packs(3).await).expect("three packs");
    let unknown = Pack { serial: fresh_serial(), ..p1.clone() };
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let body = json!({"client_trx_id": trx(), "transactions": [
        p1.row("verify"), p2.row("supply"), p3.row("lock"), p1.row("supply"), unknown.row("verify"),
        p2.row("supply-undo"),
    ]});
    let done = a.bulk_until_done(&body).await;
    assert_eq!(
        rows(&done),
        vec![
            row(&p1.serial, "NMVS_SUCCESS", true, Some("ACTIVE"), None),
            row(&p2.serial, "NMVS_SUCCESS", true, Some("SUPPLIED"), None),
            row(&p3.serial, "NMVS_SUCCESS", true, Some("LOCKED"), None),
            row(&p1.serial, "NMVS_TE_BLK_01", false, None, None),
            row(&unknown.serial, "NMVS_NC_PC_02", false, None, Some("A3")),
            row(&p2.serial, "NMVS_TE_BLK_01", false, None, None),
        ]
    );
    // The repeats were not processed; the rest is visible to single-pack requests.
    check(&a.verify(&p1.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    check(&a.verify(&p2.req()).await, "NMVS_INFO_PCK_INACTIVE", true, Some("SUPPLIED"), &[]);
    check(&a.verify(&p3.req()).await, "NMVS_INFO_PCK_INACTIVE", true, Some("LOCKED"), &[]);
    let alert = &done["results"][4]["alert"]["id"];
    assert_eq!(a.get(&format!("/v1/alerts/{}", alert.as_str().unwrap_or(""))).await.json["code"], "A3");
}

#[tokio::test]
async fn one_bad_row_refuses_the_whole_bulk_naming_the_row_and_field() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let [p1, p2, p3] = <[Pack; 3]>::try_from(app.packs(3).await).expect("three packs");
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let mut bad = p2.row("supply");
    bad["expiry"] = json!("271301");
    let mut unknown_op = p3.row("supply");
    unknown_op["operation"] = json!("teleport");
    let body = json!({"client_trx_id": trx(), "transactions": [p1.row("supply"), bad, unknown_op]});
    let r = a.post("/v1/bulk", &body).await;
    r.expect_error(400, "NMVS_TE_XM_02", Some("transactions[1].expiry"));
    r.expect_error(400, "NMVS_TE_XM_02", Some("transactions[2].operation"));
    check(&a.verify(&p1.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    // A row the role may not do refuses the bulk too.
    let export = json!({"client_trx_id": trx(), "transactions": [p1.row("supply"), p1.row("export")]});
    a.post("/v1/bulk", &export).await.expect_error(403, "NMVS_FE_AU_04", Some("transactions[1].operation"));
    assert_eq!(app.stored_state(&p1).await, "ACTIVE");
}

#[tokio::test]
async fn a_bulk_never_asks_the_hub_about_an_unknown_product() {
    let hub = Arc::new(CountingHub::default());
    let app = spawn_app_with(AppOptions { hub: Some(hub.clone()), ..AppOptions::default() }).await;
    app.seed_standard().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let foreign = Pack { product_code: GTIN_UNKNOWN.into(), ..app.pack().await };
    // A single-pack request does ask (and no market knows the product).
    check(&a.verify(&foreign.req()).await, "NMVS_NC_PC_01", false, None, &[]);
    assert_eq!(hub.intermarket_calls.load(Ordering::SeqCst), 1);
    let done =
        a.bulk_until_done(&json!({"client_trx_id": trx(), "transactions": [foreign.row("supply")]})).await;
    assert_eq!(rows(&done), vec![row(&foreign.serial, "NMVS_NC_PC_01", false, None, None)]);
    assert_eq!(hub.intermarket_calls.load(Ordering::SeqCst), 1, "the bulk asked the hub");
}

#[tokio::test]
async fn only_the_submitter_reads_a_bulk_and_a_retry_returns_the_same_bulk_id() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let [p, q] = <[Pack; 2]>::try_from(app.packs(2).await).expect("two packs");
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let b = app.client(Role::Pharmacy, "pharmacy-b").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let body = json!({"client_trx_id": trx(), "transactions": [p.row("supply")]});
    let first = a.post("/v1/bulk", &body).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let id = first.json["bulk_id"].as_str().expect("bulk_id").to_owned();
    let again = a.post("/v1/bulk", &body).await;
    assert_eq!((again.status, &again.json["bulk_id"]), (202, &json!(id)));
    let done = a.wait_bulk(&id).await;
    assert_eq!(rows(&done).len(), 1, "the retry added no rows: {done}");
    for other in [&b, &nmvo] {
        other.get(&format!("/v1/bulk/{id}")).await.expect_error(404, "NMVS_TE_NF_01", Some("bulk_id"));
    }
    // The same id for different content is refused.
    let different = json!({"client_trx_id": body["client_trx_id"], "transactions": [q.row("supply")]});
    a.post("/v1/bulk", &different).await.expect_error(409, "NMVS_TE_TX_01", Some("client_trx_id"));
    assert_eq!(app.stored_state(&q).await, "ACTIVE");
}

#[tokio::test]
async fn a_bulk_row_missing_a_field_is_refused_naming_the_row_and_field() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let [p1, p2] = <[Pack; 2]>::try_from(app.packs(2).await).expect("two packs");
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let mut short = p2.row("supply");
    short.as_object_mut().expect("a row").remove("expiry");
    let body = json!({"client_trx_id": trx(), "transactions": [p1.row("supply"), short]});
    a.post("/v1/bulk", &body).await.expect_error(400, "NMVS_TE_XM_02", Some("transactions[1].expiry"));
    assert_eq!(app.stored_state(&p1).await, "ACTIVE");
}

#[tokio::test]
async fn a_serial_repeated_in_a_bulk_under_a_shorter_spelling_of_its_gtin_is_still_a_repeat() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    // 9501101530003 is the 13-digit GTIN-13 of 09501101530003: the same product code.
    let short = Pack { product_code: GTIN[1..].to_owned(), ..p.clone() };
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let done = a
        .bulk_until_done(
            &json!({"client_trx_id": trx(), "transactions": [p.row("supply"), short.row("supply")]}),
        )
        .await;
    let codes: Vec<String> = rows(&done).into_iter().map(|r| r.1).collect();
    assert_eq!(codes, ["NMVS_SUCCESS", "NMVS_TE_BLK_01"]);
    // The next double scan from this location is then only the first repeat.
    check(&a.op("supply", &p.req()).await, "NMVS_NC_PCK_23", false, Some("SUPPLIED"), &[]);
}
