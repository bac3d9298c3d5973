//! Client lifecycle: the NMVO cuts a client off and lets it back in (its tokens refused at once on
//! the node that did it, and within seconds on every other node sharing the store), a token key
//! is revoked, and the clients are listed with when each was last seen.

use std::time::Duration;

use openmvs_core::ids::Location;
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use serde_json::{Value, json};

use openmvs_national::SECURITY_REFRESH;

use crate::harness::*;

/// `POST /oauth/token` with a client's id and secret, as a client would: the answer as it is.
async fn login(app: &TestApp, client_id: &str, secret: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .form(&[("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret)])
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A client created on `app` whose secret the test keeps, with its first token.
async fn pharmacy(app: &TestApp, location: &str) -> (String, String, String) {
    let c = app
        .national
        .create_client(Role::Pharmacy, Location::new(location).expect("location"), "pharmacy")
        .await
        .expect("create a client");
    let (status, body) = login(app, &c.client_id, &c.client_secret).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("a token").to_owned();
    (c.client_id, c.client_secret, token)
}

async fn verify_with(app: &TestApp, token: &str, p: &Pack) -> Resp {
    app.send(reqwest::Method::POST, "/v1/packs/verify", Some(token), Body::Json(p.req())).await
}

fn expect_refused_as_disabled(r: &Resp) {
    let details = r.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
    assert!(
        details.iter().any(|d| d["message"].as_str().is_some_and(|m| m.contains("disabled"))),
        "the refusal says the client is disabled: {}",
        r.text
    );
}

/// One refresh round of `node`, as its server runs every [`SECURITY_REFRESH`]: a change made on
/// another node is in force after it, so within that interval on a running node. Stepped, not
/// waited for, so that a busy machine cannot make the test late.
async fn refresh(node: &TestApp) {
    assert!(SECURITY_REFRESH <= Duration::from_secs(5), "nodes refresh at least every 5 s");
    node.national.refresh_security().await.expect("a refresh round");
}

#[tokio::test]
async fn the_nmvo_disables_a_client_whose_token_is_refused_at_once_and_enables_it_again() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let (id, secret, token) = pharmacy(&app, "pharmacy-1").await;
    assert_eq!(verify_with(&app, &token, &p).await.status, 200);

    let r = nmvo.post(&format!("/v1/admin/clients/{id}/disable"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json["client_id"].as_str(), r.json["state"].as_str()),
        (Some(id.as_str()), Some("DISABLED"))
    );
    expect_refused_as_disabled(&verify_with(&app, &token, &p).await);
    let (status, body) = login(&app, &id, &secret).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "no new token: {body}");
    let listed = nmvo.get("/v1/admin/clients").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let me =
        listed.json["clients"].as_array().expect("clients").iter().find(|c| c["client_id"] == id.as_str());
    assert_eq!(me.expect("listed")["state"], "DISABLED");

    let r = nmvo.post(&format!("/v1/admin/clients/{id}/enable"), &json!({})).await;
    assert_eq!((r.status, r.json["state"].as_str()), (200, Some("ENABLED")), "{}", r.text);
    assert_eq!(verify_with(&app, &token, &p).await.status, 200, "the token it holds works again");
    assert_eq!(login(&app, &id, &secret).await.0, 200);

    let trail = app.store.audit_by_subject(&format!("client/{id}")).await.expect("the trail");
    let ops: Vec<(&str, &str)> =
        trail.iter().map(|r| (r.entry.operation.as_str(), r.entry.actor.as_str())).collect();
    assert_eq!(
        ops,
        [
            ("client-create", "openmvs-admin"),
            ("client-disable", nmvo.client_id.as_str()),
            ("client-enable", nmvo.client_id.as_str())
        ]
    );
    assert!(!trail[0].entry.request.contains(&secret), "the secret is never audited");
    assert!(!trail[0].entry.request.contains("argon2"), "nor its hash");
}

#[tokio::test]
async fn only_the_nmvo_manages_clients_and_an_unknown_client_is_named() {
    let app = spawn_app().await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    let ph = app.client(Role::Pharmacy, "pharmacy-1").await;
    ph.get("/v1/admin/clients").await.expect_error(403, "NMVS_FE_AU_04", None);
    nca.post(&format!("/v1/admin/clients/{}/disable", ph.client_id), &json!({})).await.expect_error(
        403,
        "NMVS_FE_AU_04",
        None,
    );
    ph.post(&format!("/v1/admin/clients/{}/disable", ph.client_id), &json!({})).await.expect_error(
        403,
        "NMVS_FE_AU_04",
        None,
    );
    nmvo.post("/v1/admin/clients/cl_nobody/disable", &json!({})).await.expect_error(
        404,
        "NMVS_TE_NF_01",
        Some("client_id"),
    );
    nmvo.post(&format!("/v1/admin/clients/{}/disable", nmvo.client_id), &json!({})).await.expect_error(
        400,
        "NMVS_TE_XM_02",
        Some("client_id"),
    );
    app.get("/v1/admin/clients").await.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
    assert!(!app.national.is_disabled(&ph.client_id), "nothing was changed");
}

#[tokio::test]
async fn a_clients_last_use_is_its_last_token_or_request_written_now_and_then() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let ph = app.client(Role::Pharmacy, "pharmacy-1").await;
    let never = app
        .national
        .create_client(Role::Hospital, Location::new("hospital-1").expect("location"), "idle")
        .await
        .expect("create");
    let last_used = |clients: &Value, id: &str| {
        clients["clients"].as_array().expect("clients").iter().find(|c| c["client_id"] == id).expect("listed")
            ["last_used_at"]
            .clone()
    };
    let listed = nmvo.get("/v1/admin/clients").await.json;
    assert_eq!(last_used(&listed, &ph.client_id), json!(START), "its token");
    assert_eq!(last_used(&listed, &never.client_id), Value::Null, "never used");
    app.advance(Duration::from_secs(600));
    assert_eq!(ph.verify(&p.req()).await.status, 200);
    let listed = nmvo.get("/v1/admin/clients").await.json;
    assert_eq!(last_used(&listed, &ph.client_id), json!("2026-11-29T10:10:00.000Z"), "its request");
    let stored = async || {
        app.store.client(&ph.client_id.as_str().into()).await.expect("read").expect("client").last_used_at
    };
    assert_eq!(stored().await.map(|t| t.to_rfc3339()).as_deref(), Some(START), "not written per request");
    assert!(app.national.flush_client_use().await.expect("flush") >= 1);
    assert_eq!(stored().await.map(|t| t.to_rfc3339()).as_deref(), Some("2026-11-29T10:10:00.000Z"));
}

/// The id of the active token-signing key.
async fn active_kid(app: &TestApp) -> String {
    app.store
        .keys()
        .await
        .expect("keys")
        .into_iter()
        .find(|k| k.active)
        .expect("an active key")
        .kid
        .into_string()
}

#[tokio::test]
async fn a_revoked_token_key_refuses_its_tokens_at_once_and_the_active_key_cannot_be_revoked() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let (id, secret, old_token) = pharmacy(&app, "pharmacy-1").await;
    let old_kid = active_kid(&app).await;
    let new_kid = app.national.rotate_signing_key().await.expect("rotate");
    assert_eq!(verify_with(&app, &old_token, &p).await.status, 200, "a rotated key still verifies");
    let operator = app.national.operator();

    let e = app.national.retire_token_key(&operator, &new_kid).await.expect_err("the active key");
    assert_eq!(e.details[0].field, "kid");
    assert!(e.details[0].message.contains("rotate-token-key"), "{e:?}");
    let e = app.national.retire_token_key(&operator, "no-such-kid").await.expect_err("an unknown key");
    assert_eq!((e.code.as_str(), e.details[0].field.as_str()), ("NMVS_TE_NF_01", "kid"));

    let retired_at = app.clock.now();
    app.national.retire_token_key(&operator, &old_kid).await.expect("retire the old key");
    let r = verify_with(&app, &old_token, &p).await;
    r.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
    // Looking for keys another node made does not bring the revoked one back.
    app.advance(Duration::from_secs(5));
    verify_with(&app, &old_token, &p).await.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
    app.national.refresh_security().await.expect("refresh");
    verify_with(&app, &old_token, &p).await.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
    let (status, body) = login(&app, &id, &secret).await;
    assert_eq!(status, 200, "{body}");
    let fresh = body["access_token"].as_str().expect("token");
    assert_eq!(verify_with(&app, fresh, &p).await.status, 200, "tokens of the active key work");
    let keys = app.store.keys().await.expect("keys");
    assert!(keys.iter().any(|k| k.kid == old_kid.as_str() && k.revoked_at == Some(retired_at)));
    let trail = app.store.audit_by_subject(&format!("token-key/{old_kid}")).await.expect("the trail");
    let ops: Vec<&str> = trail.iter().map(|r| r.entry.operation.as_str()).collect();
    assert_eq!(ops, ["rotate-token-key", "retire-token-key"], "made, then retired once");
    let made = app.store.audit_by_subject(&format!("token-key/{new_kid}")).await.expect("the trail");
    assert_eq!(made.len(), 1, "the rotation is audited");
    assert_eq!(
        (made[0].entry.operation.as_str(), made[0].entry.actor.as_str()),
        ("rotate-token-key", "openmvs-admin")
    );
    assert!(made[0].entry.result.contains(&old_kid), "it names the key it retired: {}", made[0].entry.result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_disabled_on_one_node_is_refused_on_the_other_within_five_seconds() {
    let Some(pg) = shared_postgres("a client cut off on one of two nodes") else { return };
    let a = spawn_app_with(AppOptions { postgres: Some(pg.clone()), ..AppOptions::default() }).await;
    let b = spawn_app_with(AppOptions { postgres: Some(pg), ..AppOptions::default() }).await;
    a.seed_standard().await;
    let p = a.pack().await;
    let nmvo = a.client(Role::Nmvo, "nmvo-office").await;
    let (id, secret, token) = pharmacy(&b, "pharmacy-b").await;
    assert_eq!(verify_with(&b, &token, &p).await.status, 200);

    let r = nmvo.post(&format!("/v1/admin/clients/{id}/disable"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    expect_refused_as_disabled(&verify_with(&a, &token, &p).await);
    // Node B hears of it at its next refresh.
    refresh(&b).await;
    expect_refused_as_disabled(&verify_with(&b, &token, &p).await);
    assert_eq!(login(&b, &id, &secret).await.0, 401, "no new token on either node");

    let r = nmvo.post(&format!("/v1/admin/clients/{id}/enable"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    refresh(&b).await;
    assert_eq!(verify_with(&b, &token, &p).await.status, 200);
    assert_eq!(login(&b, &id, &secret).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_revoked_on_one_node_is_refused_on_the_other_within_five_seconds() {
    let Some(pg) = shared_postgres("a key revoked on one of two nodes") else { return };
    let a = spawn_app_with(AppOptions { postgres: Some(pg.clone()), ..AppOptions::default() }).await;
    let b = spawn_app_with(AppOptions { postgres: Some(pg), ..AppOptions::default() }).await;
    a.seed_standard().await;
    let p = a.pack().await;
    let (_, _, token) = pharmacy(&b, "pharmacy-b").await;
    let old_kid = active_kid(&a).await;
    a.national.rotate_signing_key().await.expect("rotate");
    a.national.retire_token_key(&a.national.operator(), &old_kid).await.expect("retire");
    verify_with(&a, &token, &p).await.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
    refresh(&b).await;
    verify_with(&b, &token, &p).await.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
}
