//! Every HTTP error of the contract: status, return code, message and the field at fault.

use std::time::Duration;

use openmvs_core::roles::Role;
use openmvs_http::limit::RateLimit;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const XM_02: &str = "NMVS_TE_XM_02";
const GR_01: &str = "NMVS_FE_GR_01";
const AU_04: &str = "NMVS_FE_AU_04";
const NF_01: &str = "NMVS_TE_NF_01";

fn without(mut v: Value, field: &str) -> Value {
    v.as_object_mut().expect("an object").remove(field);
    v
}

#[tokio::test]
async fn each_refused_request_has_the_contract_status_return_code_and_names_the_field() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let [p, q] = <[Pack; 2]>::try_from(app.packs(2).await).expect("two packs");
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let b = app.client(Role::Pharmacy, "pharmacy-b").await;
    let w = app.client(Role::Wholesaler, "warehouse-1").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    let alert = alert_id(&a.verify(&p.req_with(&[("serial", "NOSUCHSERIAL")])).await);
    let bulk = a.post("/v1/bulk", &json!({"client_trx_id": trx(), "transactions": [q.row("verify")]})).await;
    assert_eq!(bulk.status, 202, "{}", bulk.text);
    let reused = p.req();
    assert_eq!(a.verify(&reused).await.status, 200);
    let lost_gs = format!("]d201{GTIN}17{EXPIRY}10{BATCH}21{}", p.serial);
    let bad_check_digit = p.scan().replace(GTIN, "09501101530004");
    let over_16k = json!({"client_trx_id": trx(), "scan": "A".repeat(17 * 1024)}).to_string();
    let too_many_rows: Vec<String> = (0..100_001).map(|i| format!("S{i}")).collect();

    // (what, answer, status, return code, the field a detail must name)
    #[rustfmt::skip]
    let cases: Vec<(&str, Resp, u16, &str, Option<&str>)> = vec![
        ("malformed JSON", a.post_raw("/v1/packs/verify", "{\"client_trx_id\": ").await, 400, XM_02, Some("body")),
        ("unknown field", a.verify(&p.req_with(&[("colour", "red")])).await, 400, XM_02, Some("colour")),
        ("missing serial", a.verify(&without(p.req(), "serial")).await, 400, XM_02, Some("serial")),
        ("missing client_trx_id", a.verify(&without(p.req(), "client_trx_id")).await, 400, XM_02, Some("client_trx_id")),
        ("month 13", a.verify(&p.req_with(&[("expiry", "271301")])).await, 400, XM_02, Some("expiry")),
        ("29 February 2027", a.verify(&p.req_with(&[("expiry", "270229")])).await, 400, XM_02, Some("expiry")),
        ("serial of 21 characters", a.verify(&p.req_with(&[("serial", "ABCDEFGHIJKLMNOPQRSTU")])).await, 400, XM_02, Some("serial")),
        ("scan with a lost GS", a.verify(&json!({"client_trx_id": trx(), "scan": lost_gs})).await, 400, XM_02, Some("scan")),
        ("scan and fields", a.verify(&p.req_with(&[("scan", p.scan().as_str())])).await, 400, XM_02, Some("scan")),
        ("check digit in fields", a.verify(&p.req_with(&[("product_code", "09501101530004")])).await, 400, GR_01, Some("product_code")),
        ("check digit in a scan", a.verify(&json!({"client_trx_id": trx(), "scan": bad_check_digit})).await, 400, GR_01, Some("scan")),
        ("pharmacy exports", a.op("export", &p.req()).await, 403, AU_04, Some("operation")),
        ("NCA supplies", nca.op("supply", &p.req()).await, 403, AU_04, Some("operation")),
        ("wholesaler supplies where the market does not allow it", w.op("supply", &p.req()).await, 403, AU_04, Some("operation")),
        ("pharmacy changes an alert status", a.post(&format!("/v1/alerts/{alert}/status"), &json!({"status": "INVESTIGATING"})).await, 403, AU_04, Some("role")),
        ("pharmacy reads the audit trail", a.get(&p.audit_path()).await, 403, AU_04, Some("role")),
        ("unknown path", a.get("/v1/nothing-here").await, 404, NF_01, Some("path")),
        ("unknown operation", a.op("teleport", &p.req()).await, 404, NF_01, Some("operation")),
        ("check-out is not an end-user route", a.op("check-out", &p.req()).await, 404, NF_01, Some("operation")),
        ("destroy/undo", a.undo("destroy", &p.req()).await, 404, NF_01, Some("operation")),
        ("unknown alert id", a.get("/v1/alerts/ALR-000000000000-0000000000000000").await, 404, NF_01, Some("id")),
        ("another client's bulk", b.get(&format!("/v1/bulk/{}", bulk.json["bulk_id"].as_str().unwrap_or(""))).await, 404, NF_01, Some("bulk_id")),
        ("client_trx_id reused for another pack", a.verify(&q.req_with(&[("client_trx_id", reused["client_trx_id"].as_str().unwrap_or(""))])).await, 409, "NMVS_TE_TX_01", Some("client_trx_id")),
        ("body over 16 KiB", a.post_raw("/v1/packs/verify", over_16k).await, 413, "NMVS_TE_XM_03", Some("body")),
        ("bulk over 100,000 rows", a.post("/v1/bulk", &json!({"client_trx_id": trx(), "operation": "verify", "scheme": "GTIN", "product_code": GTIN, "batch": BATCH, "expiry": EXPIRY, "serials": too_many_rows})).await, 413, "NMVS_TE_XM_03", Some("transactions")),
    ];
    for (what, r, status, code, field) in &cases {
        eprintln!("case: {what}");
        r.expect_error(*status, code, *field);
    }
    // None of these changed the pack.
    check(&a.verify(&p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
}

#[tokio::test]
async fn a_missing_garbage_or_expired_token_is_401_with_www_authenticate() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let old = a.current_token();
    let path = "/v1/packs/verify";
    let valid = app.send(Method::POST, path, Some(&old), Body::Json(p.req())).await;
    check(&valid, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    // A token lives one hour, plus 30 s of leeway for clock differences.
    app.advance(Duration::from_secs(3600 + 29));
    let late_but_tolerated = app.send(Method::POST, path, Some(&old), Body::Json(p.req())).await;
    assert_eq!(late_but_tolerated.status, 200, "{}", late_but_tolerated.text);
    app.advance(Duration::from_secs(2));
    let cases = [
        ("no token", app.send(Method::POST, path, None, Body::Json(p.req())).await),
        ("garbage token", app.send(Method::POST, path, Some("not.a.token"), Body::Json(p.req())).await),
        ("expired token", app.send(Method::POST, path, Some(&old), Body::Json(p.req())).await),
        ("expired token on a read", app.send(Method::GET, "/v1/alerts", Some(&old), Body::Empty).await),
    ];
    for (what, r) in &cases {
        eprintln!("case: {what}");
        r.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
        assert_eq!(r.header("www-authenticate"), "Bearer", "{what}");
    }
    // A fresh token works again.
    check(&a.verify(&p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_as_invalid_client() {
    let app = spawn_app().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let r = crate::retry::send(app.http.post(format!("{}/oauth/token", app.base)).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &a.client_id),
        ("client_secret", "wrong"),
    ]))
    .await
    .expect("token request");
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_other_clients_are_served() {
    let rate = RateLimit { per_second: 0.001, burst: 3.0 };
    let app = spawn_app_with(AppOptions { rate, ..AppOptions::default() }).await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let b = app.client(Role::Pharmacy, "pharmacy-b").await;
    for _ in 0..3 {
        check(&a.verify(&p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    }
    let r = a.op_once("verify", &p.req()).await;
    r.expect_error(429, "NMVS_FI_SE_CLI_01", Some("client_id"));
    let retry_after: u64 = r.header("retry-after").parse().unwrap_or(0);
    assert!(retry_after >= 1, "Retry-After: {:?}", r.header("retry-after"));
    check(&b.verify(&p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
}

#[tokio::test]
async fn a_storage_failure_is_503_with_retry_after_and_changes_nothing() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    app.store.close().await;
    let body = p.req();
    let r = a.op_once("supply", &body).await;
    r.expect_error(503, "NMVS_TI_UN_01", None);
    let retry_after: u64 = r.header("retry-after").parse().unwrap_or(0);
    assert!(retry_after >= 1, "Retry-After: {:?}", r.header("retry-after"));
    assert_eq!(app.stored_state(&p).await, "ACTIVE");
    let trx = body["client_trx_id"].as_str().expect("a trx id");
    assert_eq!(
        app.store.idempotency(&a.client_id.as_str().into(), &trx.into()).await.expect("read"),
        None,
        "no stored answer"
    );
}

#[tokio::test]
async fn a_field_of_the_wrong_json_type_is_named_in_the_details() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let mut body = p.req();
    body["serial"] = json!(12345);
    a.verify(&body).await.expect_error(400, XM_02, Some("serial"));
    let mut body = p.req();
    body["client_trx_id"] = json!(["t-1"]);
    a.verify(&body).await.expect_error(400, XM_02, Some("client_trx_id"));
}
