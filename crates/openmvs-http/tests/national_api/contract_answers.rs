//! The national system's answers against its contract document: the document and its page are
//! served to anyone, and real answers (a processed pack request, a bulk request and its results,
//! alerts, the audit trail, client administration, and the HTTP errors) come with a status and
//! a content type the document lists for their operation and a body valid against its schema.

use openmvs_core::roles::Role;
use openmvs_http::openapi::{Component, document};
use reqwest::Method;
use serde_json::{Value, json};

use crate::contract::Contract;
use crate::harness::*;

/// Checks an answer of `method path` (the path as the document writes it) against the document.
fn conforms(contract: &Contract, method: &str, path: &str, r: &Resp) -> Value {
    contract.check(method, path, r.status, r.header("content-type"), r.text.as_bytes())
}

#[tokio::test]
async fn the_document_and_its_page_are_served_to_anyone() {
    let app = spawn_app().await;
    let r = app.get("/v1/openapi.json").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), "application/json");
    let expected = serde_json::to_value(document(Component::National, false)).unwrap();
    assert_eq!(r.json, expected, "the document served is the one the code generates");
    assert!(r.json["paths"].get("/admin/v1/clock").is_none(), "no clock route without --fake-clock");
    let page = app.get("/docs").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"), "{}", page.header("content-type"));
    assert!(page.text.contains("<code>/v1/packs/{operation}</code>") && page.text.contains("NMVS_NC_PC_02"));
}

#[tokio::test]
async fn real_answers_have_a_documented_status_and_are_valid_against_their_schemas() {
    let contract = Contract::of(Component::National);
    let app = spawn_app().await;
    app.seed_standard().await;
    let pharmacy = app.client(Role::Pharmacy, "DE-PH-0001").await;
    let nmvo = app.client(Role::Nmvo, "DE-NMVO").await;
    let nca = app.client(Role::Nca, "DE-NCA").await;
    let packs = app.packs(3).await;
    let ops = "/v1/packs/{operation}";

    // Processed requests, accepted and refused, fields and scan.
    let verified = conforms(&contract, "POST", ops, &pharmacy.verify(&packs[0].req()).await);
    assert_eq!(verified["return_code"], "NMVS_SUCCESS", "{verified}");
    conforms(&contract, "POST", ops, &pharmacy.op("supply", &packs[0].scan_req()).await);
    conforms(
        &contract,
        "POST",
        "/v1/packs/{operation}/undo",
        &pharmacy.undo("supply", &packs[0].req()).await,
    );
    let unknown = pharmacy.verify(&packs[1].req_with(&[("serial", fresh_serial().as_str())])).await;
    let unknown = conforms(&contract, "POST", ops, &unknown);
    assert_eq!(unknown["alert"]["code"], "A3", "{unknown}");
    let alert = unknown["alert"]["id"].as_str().unwrap().to_owned();

    // Bulk: accepted, then its results.
    let bulk = json!({"client_trx_id": trx(), "transactions": [packs[1].row("verify"), packs[2].row("supply"), packs[2].row("supply")]});
    let accepted = conforms(&contract, "POST", "/v1/bulk", &pharmacy.post("/v1/bulk", &bulk).await);
    let id = accepted["bulk_id"].as_str().unwrap().to_owned();
    pharmacy.wait_bulk(&id).await;
    let done =
        conforms(&contract, "GET", "/v1/bulk/{bulk_id}", &pharmacy.get(&format!("/v1/bulk/{id}")).await);
    assert_eq!(done["results"][2]["return_code"], "NMVS_TE_BLK_01", "{done}");

    // Alerts, worked by the NMVO.
    conforms(&contract, "GET", "/v1/alerts", &nmvo.get("/v1/alerts").await);
    conforms(&contract, "GET", "/v1/alerts", &pharmacy.get("/v1/alerts?status=OPEN&limit=1").await);
    let path = format!("/v1/alerts/{alert}");
    conforms(&contract, "GET", "/v1/alerts/{id}", &nmvo.get(&path).await);
    let changed = nmvo
        .post(&format!("{path}/status"), &json!({"status": "INVESTIGATING", "comment": "Looking."}))
        .await;
    conforms(&contract, "POST", "/v1/alerts/{id}/status", &changed);
    let comment = nmvo.post(&format!("{path}/comments"), &json!({"text": "Asked the pharmacy."})).await;
    assert_eq!(comment.status, 201, "{}", comment.text);
    conforms(&contract, "POST", "/v1/alerts/{id}/comments", &comment);
    let closed = nmvo
        .post(&format!("{path}/status"), &json!({"status": "CLOSED", "classification": "TECHNICAL_ERROR"}))
        .await;
    let detail = conforms(&contract, "POST", "/v1/alerts/{id}/status", &closed);
    assert_eq!(
        (detail["status"].as_str(), detail["history"].as_array().map(Vec::len)),
        (Some("CLOSED"), Some(2))
    );

    // The audit trail, the clients, the public routes.
    let audit = "/v1/audit/packs/{scheme}/{product_code}/{serial}";
    let trail = conforms(&contract, "GET", audit, &nca.get(&packs[0].audit_path()).await);
    assert!(trail["records"].as_array().is_some_and(|r| r.len() >= 3), "{trail}");
    let clients = conforms(&contract, "GET", "/v1/admin/clients", &nmvo.get("/v1/admin/clients").await);
    let listed = clients["clients"].as_array().unwrap();
    let id =
        listed.iter().find(|c| c["role"] == "PHARMACY").unwrap()["client_id"].as_str().unwrap().to_owned();
    let cut = nmvo.post(&format!("/v1/admin/clients/{id}/disable"), &json!({})).await;
    assert_eq!(
        conforms(&contract, "POST", "/v1/admin/clients/{client_id}/disable", &cut)["state"],
        "DISABLED"
    );
    let own = listed.iter().find(|c| c["role"] == "NMVO").unwrap()["client_id"].as_str().unwrap().to_owned();
    let itself = nmvo.post(&format!("/v1/admin/clients/{own}/disable"), &json!({})).await;
    itself.expect_error(400, "NMVS_TE_XM_02", Some("client_id"));
    conforms(&contract, "POST", "/v1/admin/clients/{client_id}/disable", &itself);
    let back = nmvo.post(&format!("/v1/admin/clients/{id}/enable"), &json!({})).await;
    assert_eq!(
        conforms(&contract, "POST", "/v1/admin/clients/{client_id}/enable", &back)["state"],
        "ENABLED"
    );
    for path in [
        "/v1/return-codes",
        "/status",
        "/metrics",
        "/health/live",
        "/health/ready",
        "/v1/openapi.json",
        "/docs",
    ] {
        conforms(&contract, "GET", path, &app.get(path).await);
    }

    // Errors: each with the status and the body the document gives.
    let bad_digit = pharmacy.verify(&packs[1].req_with(&[("product_code", "09501101530004")])).await;
    bad_digit.expect_error(400, "NMVS_FE_GR_01", Some("product_code"));
    conforms(&contract, "POST", ops, &bad_digit);
    let malformed = pharmacy.post_raw("/v1/packs/verify", "{\"client_trx_id\": ").await;
    conforms(&contract, "POST", ops, &malformed);
    let no_token = app.send(Method::POST, "/v1/packs/verify", None, Body::Json(packs[1].req())).await;
    no_token.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
    conforms(&contract, "POST", ops, &no_token);
    let forbidden = pharmacy.get(&packs[0].audit_path()).await;
    forbidden.expect_error(403, "NMVS_FE_AU_04", None);
    conforms(&contract, "GET", audit, &forbidden);
    let missing = pharmacy.get("/v1/bulk/BLK-none").await;
    missing.expect_error(404, "NMVS_TE_NF_01", None);
    conforms(&contract, "GET", "/v1/bulk/{bulk_id}", &missing);
    let no_op = pharmacy.post("/v1/packs/check-out", &packs[1].req()).await;
    conforms(&contract, "POST", ops, &no_op);
    let reused = pharmacy
        .verify(&packs[1].req_with(&[("client_trx_id", verified["client_trx_id"].as_str().unwrap())]))
        .await;
    reused.expect_error(409, "NMVS_TE_TX_01", Some("client_trx_id"));
    conforms(&contract, "POST", ops, &reused);
    let large = pharmacy.post_raw("/v1/packs/verify", vec![b' '; 17 * 1024]).await;
    assert_eq!(large.status, 413, "{}", large.text);
    conforms(&contract, "POST", ops, &large);
    let bad_query = nmvo.get("/v1/alerts?limit=0").await;
    conforms(&contract, "GET", "/v1/alerts", &bad_query);
}
